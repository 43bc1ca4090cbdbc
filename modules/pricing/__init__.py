"""The example `pricing` module (its API is in v1/pricing.proto)."""
