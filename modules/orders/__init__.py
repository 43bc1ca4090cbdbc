"""The example `orders` module (its API is in v1/orders.proto)."""
