"""The example `transactions` module (its API is in v1/transactions.proto)."""
