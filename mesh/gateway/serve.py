"""Running the gateway: listen, serve, stop; for `mesh gateway` and for the gateway `mesh up`
starts beside its coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from mesh.gateway.app import build_app
from mesh.gateway.directory import ModuleDirectory
from mesh.gateway.limit_sharing import LimitSharing
from mesh.gateway.limits import RateLimiter
from mesh.gateway.metrics import GatewayMetrics
from mesh.gateway.settings import GatewaySettings, listen_address
from mesh.protocol.tokens import VERIFICATION_KEYS_FILE, SigningKey, TokenVerifier

SHUTDOWN_GRACE_SECONDS = 10.0
"""How long the calls in flight get to finish once the gateway is told to stop."""


def mesh_token_verifier(signing_key: Path, folder: Path, env: Mapping[str, str]) -> TokenVerifier:
    """A verifier of the tokens the mesh's key signs (its public half written to `folder`), and
    of an external issuer's (MESH_TOKEN_JWKS), as the modules verify them.

    Raises:
        CredentialsError: the signing key cannot be read.
    """
    public = SigningKey.read(signing_key).public_pem
    folder.mkdir(parents=True, exist_ok=True)
    (folder / VERIFICATION_KEYS_FILE).write_bytes(public)
    return TokenVerifier.with_keys(folder / VERIFICATION_KEYS_FILE, env)


class RunningGateway:
    """A gateway serving on its own socket, following the coordinator, until `stop`."""

    def __init__(
        self,
        runner: web.AppRunner,
        directory: ModuleDirectory,
        follow: asyncio.Task[None],
        sharing: LimitSharing | None,
        url: str,
    ) -> None:
        self._runner = runner
        self._directory = directory
        self._follow = follow
        self._sharing = sharing
        self.url = url
        """Where it serves, "http://host:port"."""

    @classmethod
    async def start(cls, listen: str, directory: ModuleDirectory, settings: GatewaySettings) -> RunningGateway:
        """Listen on `listen` ("host:port") and serve.

        Raises:
            ValueError: `listen` is not host:port.
            OSError: it cannot listen there (the port is taken, say).
        """
        host, port = listen_address(listen)
        listening = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        metrics = GatewayMetrics()
        bus = None if settings.rate_limits.limits_nothing else settings.limits_bus  # nothing to share: no NATS
        limiter = RateLimiter(settings.rate_limits, shared=bus is not None)
        sharing = None if bus is None else LimitSharing(limiter, bus, metrics)
        # handler_cancellation: a caller who goes away cancels its call to the module (a stream's too).
        runner = web.AppRunner(
            build_app(directory, settings, limiter, metrics),
            access_log=None,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
            handler_cancellation=True,
        )
        await runner.setup()
        await web.SockSite(runner, listening).start()
        bound = listening.getsockname()[1]  # our own socket: port 0 asks for any free port
        follow = asyncio.create_task(directory.follow(), name="gateway-follows-coordinator")
        if sharing is not None:
            sharing.start()
        return cls(runner, directory, follow, sharing, f"http://{f'[{host}]' if ':' in host else host}:{bound}")

    async def stop(self) -> None:
        """Stop taking requests, let those in flight finish (SHUTDOWN_GRACE_SECONDS at most)."""
        self._follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._follow
        await self._runner.cleanup()
        if self._sharing is not None:
            await self._sharing.stop()  # after the last call: its report goes out too
        await self._directory.close()
