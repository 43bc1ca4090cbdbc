"""What one initialized module instance holds: its settings, its NATS connection, event bus,
tenant view and cache, its channels to dependencies and its background tasks.

The runtime owns this object and closes it at Stop or Reload; the author's `Context` is a
view onto it. Keeping the internals here (rather than as public members of `Context`) is
what lets `Context` have no optional members and nothing an author should not call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from nats.aio.client import Client as NatsClient
from nats.errors import StaleConnectionError, UnexpectedEOF
from pydantic import BaseModel

from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.names import CACHE_BUCKET_PREFIX
from mesh.protocol.nats_access import inbox_prefix
from mesh.protocol.streams import open_bucket
from mesh.protocol.telemetry import client_interceptors
from mesh.protocol.transport import Transport
from mesh.v1 import lifecycle_pb2
from sdk._health import ComponentHealth
from sdk._metrics import ModuleMetricsRecorder
from sdk._tenancy import ModuleCache, TenantView
from sdk.events import DeliveryObserver, EventBus, HandlerBinding
from sdk.runtime._channels import RenewingChannel
from sdk.runtime._nats_link import NatsConnectionHealth, ReconnectingClient

ConfigT = TypeVar("ConfigT", bound=BaseModel)
StubT = TypeVar("StubT")

CACHE_MAX_AGE_SECONDS = 24 * 3600.0
"""The longest a ctx.cache entry is kept, whatever its own time to live."""

_log = logging.getLogger("sdk")


class ModuleResources(Generic[ConfigT]):
    """The connections and tasks of one module instance, from Initialize to Stop."""

    def __init__(
        self,
        manifest: Manifest,
        settings: lifecycle_pb2.ModuleSettings,
        events: EventBus,
        nats_client: NatsClient | None,
        transport: Transport,
        nats_health: NatsConnectionHealth | None = None,
    ) -> None:
        self.manifest = manifest
        self.settings = settings
        self.events = events
        self.nats = nats_client
        self._nats_health = nats_health
        self.tenants: TenantView[ConfigT] | None = None
        self.cache: ModuleCache | None = None
        self.failed_tasks: dict[str, BaseException] = {}
        self._endpoints = {endpoint.name: endpoint for endpoint in settings.dependencies}
        self._transport = transport
        self._channels: dict[str, RenewingChannel] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    async def open(
        cls,
        *,
        module: Any,
        manifest: Manifest,
        manifest_path: Path,
        settings: lifecycle_pb2.ModuleSettings,
        config_model: type[ConfigT],
        base_config: dict[str, Any],
        handlers: list[HandlerBinding],
        recorder: ModuleMetricsRecorder,
        observers: list[DeliveryObserver],
        transport: Transport,
    ) -> ModuleResources[ConfigT]:
        """Connect to NATS (when the settings name servers), create the event consumers and
        open tenancy and the cache. What was opened is closed again if a later step fails."""
        nats_health = NatsConnectionHealth()
        nats_client = await _connect_nats(manifest.name, settings.nats, nats_health)
        events = EventBus(
            nats_client=nats_client,
            module=module,
            manifest=manifest,
            manifest_path=str(manifest_path),
            bindings=handlers,
            recorder=recorder,
            events_since=settings.events_since.ToDatetime(tzinfo=UTC) if settings.HasField("events_since") else None,
            provisioned_by_mesh=bool(settings.coordinator_address),
            observers=observers,
        )
        resources: ModuleResources[ConfigT] = cls(manifest, settings, events, nats_client, transport, nats_health)
        try:
            await events.prepare()
            if nats_client is not None:
                await resources._open_tenancy(module, nats_client, base_config, config_model, recorder)
        except BaseException:
            await resources.close(0.0)
            raise
        return resources

    async def _open_tenancy(
        self,
        module: Any,
        nats_client: NatsClient,
        base_config: dict[str, Any],
        config_model: type[ConfigT],
        recorder: ModuleMetricsRecorder,
    ) -> None:
        js = nats_client.jetstream()
        view = TenantView(js, self.manifest.name, base_config, config_model)
        view.on_enabled = module.on_tenant_enabled
        view.on_disabled = module.on_tenant_disabled
        self.tenants = view  # set before open(), so a failing open is still closed
        await view.open()
        self.events.accepts = _tenant_filter(view)
        cache = ModuleCache(await open_bucket(js, CACHE_BUCKET_PREFIX + self.manifest.name, ttl=CACHE_MAX_AGE_SECONDS))
        self.cache = cache
        recorder.gauge("cache_hit_rate", lambda: cache.hit_rate)

    # --- what the Context hands out -------------------------------------------------

    def endpoint(self, name: str) -> lifecycle_pb2.DependencyEndpoint | None:
        """The address given at Initialize for dependency `name`, if any."""
        return self._endpoints.get(name)

    def retarget(self, dependencies: Iterable[lifecycle_pb2.DependencyEndpoint]) -> None:
        """Follow dependencies to new addresses: stubs already handed out call there next."""
        for endpoint in dependencies:
            self._endpoints[endpoint.name] = endpoint
            channel = self._channels.get(endpoint.name)
            if channel is not None:
                channel.retarget(endpoint.address)

    def client(self, name: str, stub_class: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        """A stub over the channel to dependency `name`, opened on first use and closed at Stop;
        it presents the module's certificate (the renewed one once renewed)."""
        channel = self._channels.get(name)
        if channel is None:
            channel = RenewingChannel(
                self._transport, self._endpoints[name].address, interceptors=client_interceptors()
            )
            self._channels[name] = channel
        return stub_class(channel)

    async def publish(self, event_type: str, payload: Any, **attributes: Any) -> str:
        """Publish through the event bus (see `Context.publish`)."""
        return await self.events.publish(event_type, payload, **attributes)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work, name=f"{self.manifest.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failed_tasks[task.get_name()] = error
            logging.getLogger(f"mesh.module.{self.manifest.name}").error(
                "background task %s failed", task.get_name(), exc_info=error
            )

    def nats_component(self) -> ComponentHealth | None:
        """The module's NATS connection as a health component ("nats"): connected HEALTHY,
        disconnected DEGRADED and UNHEALTHY past 30 s, closed UNHEALTHY; None without NATS."""
        if self.nats is None or self._nats_health is None:
            return None
        return self._nats_health.component(self.nats)

    @property
    def active_workers(self) -> int:
        """How many background tasks are running."""
        return len(self._tasks)

    # --- closing --------------------------------------------------------------------

    async def close(self, grace_seconds: float) -> bool:
        """Cancel background tasks, then close channels, tenancy and NATS.

        Returns:
            True when some task did not finish within `grace_seconds` after cancellation.
        """
        for task in self._tasks:
            task.cancel()
        pending: set[asyncio.Task[Any]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(grace_seconds, 0.0))
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        if self.tenants is not None:
            await self.tenants.close()
        if self.nats is not None and not self.nats.is_closed:
            # Handlers were drained by the event bus already; flush what was published and
            # close. (nats-py's drain() waits up to 30 s on pull subscriptions after a reconnect.)
            try:
                await self.nats.flush(timeout=2)
            except Exception as error:  # closing must never stop the rest of Stop
                _log.warning("module %s: flushing NATS failed: %s", self.manifest.name, error)
            try:
                await self.nats.close()
            except Exception as error:  # NATS away: the connection is gone either way
                _log.warning("module %s: closing NATS failed: %s", self.manifest.name, error)
        for task in pending:
            _log.warning("module %s: background task %s ignored cancellation", self.manifest.name, task.get_name())
        return bool(pending)


async def _connect_nats(
    module: str, settings: lifecycle_pb2.NatsSettings, health: NatsConnectionHealth
) -> NatsClient | None:
    """A connection to the NATS servers of the settings that reconnects whatever ended it
    (see _nats_link), followed by `health`; None when no servers were given."""
    if not settings.servers:
        return None
    options: dict[str, Any] = {
        **health.callbacks(),
        "servers": list(settings.servers),
        "name": f"mesh-module-{module}",
        "connect_timeout": 5,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": RECONNECT_WAIT_SECONDS,
        "inbox_prefix": inbox_prefix(module),
        "error_cb": functools.partial(_log_nats_error, module),
    }
    if settings.token:
        options["token"] = settings.token
    if settings.user:
        options["user"] = settings.user
        options["password"] = settings.password
    if settings.credentials_file:
        options["user_credentials"] = settings.credentials_file
    client = ReconnectingClient()
    try:
        await client.connect(**options)
        return client
    except Exception as error:
        raise MeshError(
            "MODULE_UNAVAILABLE",
            f"module {module} cannot reach NATS at {', '.join(settings.servers)}: "
            f"{error}; check the NATS settings passed to Initialize",
            metadata={"module": module},
        ) from error


RECONNECT_WAIT_SECONDS = 0.5
"""How long after an attempt the client tries the same server again (nats-py's default is 2 s).
A connection the server drops while it reloads its users (below) comes back at once on the
next try; with 2 s, each such drop held a module's Initialize, and every module that depends
on it, for 1.5-2 s while a mesh of 40 modules started (bench/boot.py). During an outage, a
module tries twice a second: cheap for the server, and back within half a second."""

_CONNECTION_LOST = (OSError, UnexpectedEOF, StaleConnectionError)
"""What nats-py reports when the socket goes: the client reconnects by itself, and the
module's health says DEGRADED meanwhile. The server drops a connection that is still in its
handshake when it reloads its users (as the coordinator has it do for each module it admits
at start-up), so this happens now and then while a mesh starts."""


async def _log_nats_error(module: str, error: Exception) -> None:
    """What NATS refuses asynchronously (a permissions violation above all) is logged with the
    module's name; nats-py would otherwise only let the request that caused it time out. A lost
    connection is only a warning: the client reconnects."""
    if isinstance(error, _CONNECTION_LOST):
        why = str(error) or type(error).__name__
        _log.warning("module %s: lost its NATS connection (%s); reconnecting", module, why)
        return
    _log.error("module %s: NATS says: %s", module, error)


def _tenant_filter(view: TenantView[Any]) -> Any:
    """Events of a tenant the module is disabled for are acknowledged and skipped."""

    async def accepts(event: Any) -> bool:
        return not event.tenant or view.is_enabled(event.tenant)

    return accepts
