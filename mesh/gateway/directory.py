"""Which modules the mesh runs and where, followed live from the coordinator's WatchModules,
so that a module restarted on a new port, or installed while the gateway runs, is routable at
once; and, per module and address, its routes (read from its reflection once) and a channel.

Channels present the gateway's certificate as it is when they are made; the certificate is
renewed while the gateway runs, so a channel is made afresh once the files changed (the old
one is closed a while later, when the calls on it are done).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc

from mesh.gateway.routes import ModuleRoutes, read_routes
from mesh.protocol.reflection import ReflectedMethod
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, module_pb2

_log = logging.getLogger("mesh.gateway")

RETRY_SECONDS = 0.5
"""How long the directory waits before asking the coordinator again after it did not answer."""
RETIRED_CHANNEL_SECONDS = 60.0
"""How long a channel made with credentials since renewed stays open for the calls on it."""
REFLECTION_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Placement:
    """Where a module serves, whether it serves now, and which of its methods are public."""

    address: str
    state: int
    public: frozenset[str] = frozenset()
    """The methods its manifest's `[gateway] public` names (a name, or "pkg.Service/Method")."""

    def is_public(self, route: ReflectedMethod) -> bool:
        """Whether the gateway calls `route` without a bearer token."""
        method = route.method
        return method.name in self.public or f"{method.containing_service.full_name}/{method.name}" in self.public

    @property
    def serving(self) -> bool:
        return self.state == module_pb2.MODULE_STATE_RUNNING


class ModuleDirectory:
    """The mesh's modules as the coordinator sees them, kept current.

    Args:
        coordinator: The coordinator's "host:port".
        transport: The gateway's credentials (to the coordinator and to the modules).
    """

    def __init__(self, coordinator: str, transport: Transport) -> None:
        self._coordinator = coordinator
        self._transport = transport
        self._placements: dict[str, Placement] = {}
        self._routes: dict[str, ModuleRoutes] = {}
        self._channels: dict[str, tuple[tuple[int, ...], grpc.aio.Channel]] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._reading: dict[tuple[str, str], asyncio.Future[ModuleRoutes]] = {}
        self._followed = asyncio.Event()
        self.connected = False
        """Whether the directory follows the coordinator right now."""

    @property
    def coordinator(self) -> str:
        return self._coordinator

    def placement(self, module: str) -> Placement | None:
        """Where `module` serves, or None when the mesh has no such module."""
        return self._placements.get(module)

    @property
    def heard(self) -> bool:
        """Whether the coordinator has told the directory its modules at least once."""
        return self._followed.is_set()

    def names(self) -> list[str]:
        """The modules of the mesh, sorted."""
        return sorted(self._placements)

    async def wait_followed(self, timeout_seconds: float) -> bool:
        """Wait until the directory has heard from the coordinator once."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                await self._followed.wait()
        return self._followed.is_set()

    async def follow(self) -> None:
        """Follow the coordinator's module list until cancelled; when the coordinator does not
        answer, ask again every RETRY_SECONDS (the last list known stays in use meanwhile).

        Each time the watch starts, its snapshot updates the list at once; at the first change
        after it, the list becomes the snapshot's, so a module removed while the gateway was
        not listening is dropped then."""
        while True:
            try:
                async with self._transport.channel(self._coordinator) as channel:
                    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
                    snapshot: dict[str, Placement] | None = None
                    watch = stub.WatchModules(coordinator_pb2.WatchModulesRequest(include_snapshot=True))
                    async for change in watch:
                        status = change.status
                        placement = Placement(status.address, status.state, frozenset(status.public_methods))
                        if change.snapshot:
                            snapshot = {} if snapshot is None else snapshot
                            snapshot[change.status.name] = placement
                        elif snapshot is not None:
                            self._placements, snapshot = snapshot, None
                        self._placements[change.status.name] = placement
                        self._heard()
            except grpc.aio.AioRpcError as error:
                if self.connected:
                    _log.warning("the coordinator at %s stopped answering: %s", self._coordinator, error.details())
                self.connected = False
            await asyncio.sleep(RETRY_SECONDS)

    def _heard(self) -> None:
        self.connected = True
        self._followed.set()

    async def routes(self, module: str, placement: Placement) -> ModuleRoutes:
        """The routes of `module` at its address now, read from its reflection the first time.

        Raises:
            ReflectionFailed: the module's reflection could not be read.
        """
        known = self._routes.get(module)
        if known is not None and known.address == placement.address:
            return known
        key = (module, placement.address)
        reading = self._reading.get(key)
        if reading is None:  # one read for all the calls that arrive before it is done
            reading = asyncio.ensure_future(asyncio.to_thread(self._read_routes, module, placement.address))
            self._reading[key] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        read = await asyncio.wait_for(asyncio.shield(reading), REFLECTION_TIMEOUT_SECONDS)
        self._routes[module] = read
        return read

    def _read_routes(self, module: str, address: str) -> ModuleRoutes:
        with self._transport.blocking_channel(address) as channel:
            return read_routes(channel, module, address)

    def channel(self, address: str) -> grpc.aio.Channel:
        """A channel to `address` presenting the gateway's current certificate."""
        stamp = self._transport.stamp()
        known = self._channels.get(address)
        if known is not None and known[0] == stamp:
            return known[1]
        channel = self._transport.channel(address)
        self._channels[address] = (stamp, channel)
        if known is not None:
            retiring = asyncio.get_running_loop().create_task(_close_later(known[1]))
            self._retired.add(retiring)
            retiring.add_done_callback(self._retired.discard)
        return channel

    async def close(self) -> None:
        """Close every channel (at shutdown)."""
        for task in list(self._retired):
            task.cancel()
        for _stamp, channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()


async def _close_later(channel: grpc.aio.Channel) -> None:
    await asyncio.sleep(RETIRED_CHANNEL_SECONDS)
    await channel.close(None)
