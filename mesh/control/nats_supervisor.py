"""Supervision of the embedded nats-server: when it dies while the mesh runs, it is started
again on the same port with the same data folder and users, so that every client's own
reconnect (nats-py retries the same URL) finds it, and durable events and consumers survive.

Only the coordinator can do this: the server listens on a port the coordinator picked, so
nothing outside knows where to start it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from mesh.protocol.nats_server import EmbeddedNats, NatsServerError

_log = logging.getLogger("mesh")


@dataclass(frozen=True)
class RestartBackoff:
    """How soon a dead server is started again: at once, then waits that double up to a cap.
    A server that stayed up `stable_seconds` is forgiven its earlier deaths."""

    initial_seconds: float = 0.1
    max_seconds: float = 5.0
    stable_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before restart attempt `attempt` (0-based) of one outage or crash series."""
        if attempt == 0:
            return 0.0
        return float(min(self.initial_seconds * 2 ** (attempt - 1), self.max_seconds))


class NatsSupervisor:
    """Watches one embedded nats-server and restarts it when it ends unexpectedly.

    Run `watch()` as a task from the thread that started the server (its parent-death
    signal follows that thread); cancel the task before stopping the server on purpose.

    Args:
        server: The started server.
        backoff: How soon restarts follow each other.
    """

    def __init__(self, server: EmbeddedNats, backoff: RestartBackoff | None = None) -> None:
        self._server = server
        self._backoff = backoff or RestartBackoff()
        self.restarts = 0
        """How many times the server was started again."""
        self.down_since: float | None = None
        """When (time.monotonic) the server was found dead; None while it runs."""
        self.last_exit = ""
        """How the server last ended, for health messages."""

    @property
    def running(self) -> bool:
        """Whether the server process is alive now."""
        return self._server.running

    async def watch(self) -> None:
        """Restart the server each time it exits, forever (until cancelled)."""
        attempt = 0
        while True:
            up_since = time.monotonic()
            code = await self._server.exited()
            self.down_since = time.monotonic()
            self.last_exit = _describe_exit(code)
            if self.down_since - up_since >= self._backoff.stable_seconds:
                attempt = 0
            _log.error(
                "the embedded nats-server %s; starting it again on port %s (restart %d)",
                self.last_exit,
                self._server.port,
                self.restarts + 1,
            )
            attempt = await self._restart(attempt)

    async def _restart(self, attempt: int) -> int:
        """Start the server until it comes up; returns the attempt count of this series."""
        while True:
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1
            try:
                url = await self._server.restart()
            except NatsServerError as error:
                _log.error("restarting the embedded nats-server failed (attempt %d): %s", attempt, error)
                continue
            self.restarts += 1
            assert self.down_since is not None
            _log.warning(
                "the embedded nats-server is back at %s after %.1f s (restart %d)",
                url,
                time.monotonic() - self.down_since,
                self.restarts,
            )
            self.down_since = None
            return attempt


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was ended by signal {-code}"
    return f"exited with code {code}"
