"""What a module receives at initialize: its config, clients to its dependencies, its
logger, tracer and meter, background tasks and its own metrics.

A context lives from one Initialize (or Reload) to the next Stop (or Reload); closing it
cancels its background tasks and closes its channels and its NATS connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
import nats
from nats.aio.client import Client as NatsClient
from opentelemetry import metrics, trace

from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.telemetry import client_interceptors
from mesh.v1 import lifecycle_pb2
from sdk._events import EventBus
from sdk._metrics import Counter, ModuleMetricsRecorder
from sdk._tenancy import ModuleCache, TenantView

ConfigT = TypeVar("ConfigT")
StubT = TypeVar("StubT")

_log = logging.getLogger("sdk")


class Context(Generic[ConfigT]):
    """The module's view of the mesh, from Initialize to Stop.

    Attributes:
        name: The module's name.
        manifest: The module's manifest.
        config: The validated configuration (an instance of the module's `config_model`).
        logger: A logger named `mesh.module.<name>`.
        tracer: An OpenTelemetry tracer named after the module.
        meter: An OpenTelemetry meter named after the module.
        state_dir: A folder where the module may keep state; it exists.
        nats: The NATS connection, or None when the module was given no NATS servers.
    """

    def __init__(
        self,
        *,
        manifest: Manifest,
        manifest_path: Path,
        config: ConfigT,
        settings: lifecycle_pb2.ModuleSettings,
        state_dir: Path,
        recorder: ModuleMetricsRecorder,
    ) -> None:
        self.name = manifest.name
        self.manifest = manifest
        self.config = config
        self.logger = logging.getLogger(f"mesh.module.{manifest.name}")
        self.tracer = trace.get_tracer(f"mesh.module.{manifest.name}", manifest.version)
        self.meter = metrics.get_meter(f"mesh.module.{manifest.name}", manifest.version)
        self.state_dir = state_dir
        self.nats: NatsClient | None = None
        self.settings = settings
        self._manifest_path = manifest_path
        self._recorder = recorder
        self._endpoints = {endpoint.name: endpoint for endpoint in settings.dependencies}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failed_tasks: dict[str, BaseException] = {}
        self.events: EventBus | None = None
        self.tenants: TenantView | None = None
        """Which tenants the module serves, their flags and configuration (None without NATS)."""
        self.cache: ModuleCache | None = None
        """The module's key-value cache, shared by its replicas (None without NATS)."""

    # --- events -------------------------------------------------------------------

    async def publish(
        self,
        event_type: str,
        payload: Any,
        *,
        tenant: str | None = None,
        company: str | None = None,
        subject: str | None = None,
        event_id: str | None = None,
        durable: bool = True,
    ) -> str:
        """Publish an event of a type the manifest declares under [events] publishes.

        Args:
            event_type: `entity.action`, e.g. "order.created".
            payload: A pydantic model (sent as JSON), a protobuf message, bytes, or plain JSON data.
            tenant: The tenant the event belongs to (part of the subject).
            company: The company within the tenant.
            subject: What the event is about, e.g. an order id (CloudEvents `subject`).
            event_id: The event's id; a new one if None. Publishing the same id twice within
                two minutes stores it once.
            durable: Wait until JetStream has stored it (retrying through NATS outages); False
                publishes fire-and-forget on core NATS (for high-rate signals).

        Returns:
            The event's id.

        Raises:
            MeshError: UNDECLARED_EVENT for a type the manifest does not declare; INVALID_EVENT
                for a payload larger than the server takes.
        """
        if self.events is None:
            raise MeshError("MODULE_UNAVAILABLE", f"module {self.name} cannot publish before Initialize")
        return await self.events.publish(
            event_type, payload, tenant=tenant, company=company, subject=subject, event_id=event_id, durable=durable
        )

    # --- dependencies -------------------------------------------------------------

    def has_dependency(self, name: str) -> bool:
        """True when dependency `name` is declared and available (an optional one may not be)."""
        self._require_declared(name)
        endpoint = self._endpoints.get(name)
        return endpoint is not None and endpoint.available and bool(endpoint.address)

    def client(self, name: str, stub_class: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        """A stub of `stub_class` talking to dependency `name` at the address given at Initialize.

        Raises:
            MeshError: UNDECLARED_DEPENDENCY when the manifest does not declare `name`;
                MODULE_UNAVAILABLE when it is optional and not available now.
        """
        self._require_declared(name)
        if not self.has_dependency(name):
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"dependency '{name}' of module {self.name} is not available now (it is optional "
                f"and absent or failed); check ctx.has_dependency('{name}') before asking for a client",
                metadata={"module": self.name, "dependency": name},
            )
        channel = self._channels.get(name)
        if channel is None:
            channel = grpc.aio.insecure_channel(self._endpoints[name].address, interceptors=client_interceptors())
            self._channels[name] = channel
        return stub_class(channel)

    def _require_declared(self, name: str) -> None:
        if self.manifest.dependency(name) is None:
            declared = ", ".join(d.name for d in self.manifest.dependencies) or "none"
            raise MeshError(
                "UNDECLARED_DEPENDENCY",
                f"module {self.name} asked for dependency '{name}', which {self._manifest_path} "
                f"does not declare (declared: {declared}); add a [[dependencies]] entry with "
                f'name = "{name}"',
                metadata={"module": self.name, "dependency": name},
            )

    # --- background work ----------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run `work` in the background until it ends or the module stops.

        Running tasks count as the module's active workers. A task that raises is logged
        and makes the module's health DEGRADED. Stop cancels what is still running.
        """
        task = asyncio.get_running_loop().create_task(work, name=f"{self.name}:{name}")
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
            self.logger.error("background task %s failed", task.get_name(), exc_info=error)

    @property
    def active_workers(self) -> int:
        """How many background tasks are running."""
        return len(self._tasks)

    # --- module-defined metrics ---------------------------------------------------

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Report `read()` under `name` in the module's metrics (e.g. a cache hit rate).
        Defining it again, as a Reload does, replaces the reader."""
        self._recorder.gauge(name, read)

    def counter(self, name: str) -> Counter:
        """A counter reported under `name` in the module's metrics; call `.add(n)`.
        Asking again, as a Reload does, returns the same counter with its count."""
        return self._recorder.counter(name)

    # --- owned resources ----------------------------------------------------------

    async def connect_nats(self) -> None:
        """Connect to the NATS servers of the settings, if any were given."""
        nats_settings = self.settings.nats
        if not nats_settings.servers:
            return
        options: dict[str, Any] = {
            "servers": list(nats_settings.servers),
            "name": f"mesh-module-{self.name}",
            "connect_timeout": 5,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
        }
        if nats_settings.token:
            options["token"] = nats_settings.token
        if nats_settings.user:
            options["user"] = nats_settings.user
            options["password"] = nats_settings.password
        if nats_settings.credentials_file:
            options["user_credentials"] = nats_settings.credentials_file
        try:
            self.nats = await nats.connect(**options)
        except Exception as error:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module {self.name} cannot reach NATS at {', '.join(nats_settings.servers)}: "
                f"{error}; check the NATS settings passed to Initialize",
                metadata={"module": self.name},
            ) from error

    async def close(self, grace_seconds: float) -> bool:
        """Cancel background tasks, then close channels and NATS.

        Returns:
            True when some task did not finish within `grace_seconds` after cancellation.
        """
        for task in self._tasks:
            task.cancel()
        pending: set[asyncio.Task[Any]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(grace_seconds, 0.0))
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self.tenants is not None:
            await self.tenants.close()
        if self.nats is not None and not self.nats.is_closed:
            # Handlers were drained by the event bus already; flush what was published and
            # close. (nats-py's drain() waits up to 30 s on pull subscriptions after a reconnect.)
            try:
                await self.nats.flush(timeout=2)
            except Exception as error:  # closing must never stop the rest of Stop
                _log.warning("module %s: flushing NATS failed: %s", self.name, error)
            await self.nats.close()
        for task in pending:
            _log.warning("module %s: background task %s ignored cancellation", self.name, task.get_name())
        return bool(pending)
