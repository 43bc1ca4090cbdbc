"""The example `wallet` module (its API is in v1/wallet.proto)."""
