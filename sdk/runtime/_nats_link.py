"""A module's NATS connection that comes back by itself, and what its health says about it.

Why a server-closed connection used to stay closed: nats-py (`Client._process_err`) answers
every `-ERR` from the server other than a stale connection or a permissions violation by
closing the client for good (CLOSED: no reconnect, subscriptions gone), whatever
`max_reconnect_attempts` says; the Go client does the same. The server sends such errors
(e.g. "Maximum Control Line Exceeded" for a too long subject) right before it drops the
socket, so the connection is lost exactly as on a network failure — and is treated as one
here: the client reconnects, and nats-py sends every subscription again (the event bus's
pull subscriptions and the KV watchers included), so nothing has to be bound again.

An authorization violation still closes the client (the same login would be refused again);
the NATS component of the module's health is then UNHEALTHY and says to restart it.
"""

from __future__ import annotations

import time
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.protocol.parser import AUTHORIZATION_VIOLATION, PERMISSIONS_ERR, STALE_CONNECTION

from sdk._health import ComponentHealth, HealthStatus

NATS_UNHEALTHY_AFTER_SECONDS = 30.0
"""How long a module may be without NATS before its health says UNHEALTHY (DEGRADED before):
a restarted server is back within seconds; past this, something needs a person."""

COMPONENT = "nats"

_ERRORS_NATS_PY_HANDLES = (STALE_CONNECTION, AUTHORIZATION_VIOLATION, PERMISSIONS_ERR)


class ReconnectingClient(NatsClient):
    """A nats-py client that reconnects after the server closed the connection with an error."""

    async def _process_err(self, err_msg: str) -> None:
        lowered = err_msg.lower()
        if not self.is_connected or any(marker in lowered for marker in _ERRORS_NATS_PY_HANDLES):
            await super()._process_err(err_msg)
            return
        error = NatsError(f"nats: {err_msg.strip(chr(39))}; reconnecting")
        await self._error_cb(error)
        await self._process_op_err(error)


class NatsConnectionHealth:
    """Follows one connection's disconnects and closes, for the module's health.

    Pass `callbacks()` to nats-py's connect.

    Args:
        unhealthy_after_seconds: How long a disconnect is DEGRADED before it is UNHEALTHY.
    """

    def __init__(self, unhealthy_after_seconds: float = NATS_UNHEALTHY_AFTER_SECONDS) -> None:
        self._unhealthy_after = unhealthy_after_seconds
        self._disconnected_since: float | None = None
        self.reconnects = 0
        """How many times the connection came back."""

    def callbacks(self) -> dict[str, Any]:
        """nats-py connect() options that keep this object informed."""
        return {
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }

    def component(self, client: NatsClient) -> ComponentHealth:
        """The "nats" component: connected HEALTHY; disconnected DEGRADED, UNHEALTHY past the
        threshold; closed UNHEALTHY."""
        if client.is_connected:
            return ComponentHealth(COMPONENT, HealthStatus.HEALTHY)
        if client.is_closed:
            why = f" ({client.last_error})" if client.last_error else ""
            return ComponentHealth(
                COMPONENT,
                HealthStatus.UNHEALTHY,
                message=f"the NATS connection was closed{why} and will not come back; restart the module",
            )
        since = self._disconnected_since if self._disconnected_since is not None else time.monotonic()
        down_for = time.monotonic() - since
        status = HealthStatus.UNHEALTHY if down_for >= self._unhealthy_after else HealthStatus.DEGRADED
        return ComponentHealth(COMPONENT, status, message=f"disconnected from NATS for {down_for:.0f} s; reconnecting")

    async def _on_disconnected(self) -> None:
        if self._disconnected_since is None:
            self._disconnected_since = time.monotonic()

    async def _on_reconnected(self) -> None:
        self._disconnected_since = None
        self.reconnects += 1
