"""The example `greeter` module (its API is in v1/greeter.proto)."""
