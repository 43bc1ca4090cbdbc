"""The example `users` module (its API is in v1/users.proto)."""
