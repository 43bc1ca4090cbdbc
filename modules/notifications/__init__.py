"""The example `notifications` module (its API is in v1/notifications.proto)."""
