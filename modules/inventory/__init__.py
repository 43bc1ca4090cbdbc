"""The example `inventory` module (its API is in v1/inventory.proto)."""
