"""What a module receives at initialize: its config, clients to its dependencies, its
logger, tracer and meter, tenancy, a cache, databases with an outbox, background tasks and
its own metrics.

A context lives from one Initialize (or Reload) to the next Stop (or Reload). It is built
whole by the runtime once the module's connections are open, so every member is there
from the first line of `initialize`; the connections themselves belong to the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import grpc
from nats.aio.client import Client as NatsClient
from opentelemetry import metrics, trace
from pydantic import BaseModel

from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.v1 import lifecycle_pb2
from sdk._health import ComponentHealth
from sdk._metrics import Counter, ModuleMetricsRecorder
from sdk._outbox import OUTBOX_MAX_AGE_SECONDS, Outbox
from sdk._storage import Database
from sdk._tenancy import ModuleCache, TenantView
from sdk.events import EventTracing, Publisher

ConfigT = TypeVar("ConfigT", bound=BaseModel)
StubT = TypeVar("StubT")


class Resources(Protocol[ConfigT]):
    """What a context needs from the runtime that owns the module's connections.

    The runtime's `ModuleResources` serves a module in a mesh; the unit test tier serves
    one with the test's own stand-ins. A protocol, so the context never imports the runtime.
    """

    @property
    def tenants(self) -> TenantView[ConfigT] | None: ...
    @property
    def cache(self) -> ModuleCache | None: ...
    @property
    def nats(self) -> NatsClient | None: ...
    @property
    def active_workers(self) -> int: ...
    def endpoint(self, name: str) -> lifecycle_pb2.DependencyEndpoint | None: ...
    def client(self, name: str, stub_class: Callable[[grpc.aio.Channel], StubT]) -> StubT: ...
    async def publish(self, event_type: str, payload: Any, **attributes: Any) -> str: ...
    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...


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
        stopping: Set when the module begins to stop or to re-initialize. The calls in flight
            are then drained: a long-lived stream (a watch) waits on this and ends, so that it
            does not hold the stop up until its grace runs out.
    """

    def __init__(
        self,
        *,
        manifest: Manifest,
        manifest_path: Path,
        config: ConfigT,
        state_dir: Path,
        resources: Resources[ConfigT],
        recorder: ModuleMetricsRecorder,
    ) -> None:
        self.name = manifest.name
        self.manifest = manifest
        self.config = config
        self.logger = logging.getLogger(f"mesh.module.{manifest.name}")
        self.tracer = trace.get_tracer(f"mesh.module.{manifest.name}", manifest.version)
        self.meter = metrics.get_meter(f"mesh.module.{manifest.name}", manifest.version)
        self.state_dir = state_dir
        self.stopping = asyncio.Event()
        self._manifest_path = manifest_path
        self._resources = resources
        self._recorder = recorder
        self._checker: Publisher | None = None
        self._outboxes: list[Outbox] = []

    # --- tenancy, cache, NATS -------------------------------------------------------

    @property
    def tenants(self) -> TenantView[ConfigT]:
        """Which tenants the module serves, their flags and configuration (kept current by watches).

        Raises:
            MeshError: MODULE_UNAVAILABLE when the module was given no NATS servers.
        """
        if self._resources.tenants is None:
            raise self._without_nats("tenancy (ctx.tenants)")
        return self._resources.tenants

    @property
    def cache(self) -> ModuleCache:
        """The module's key-value cache, shared by its replicas.

        Raises:
            MeshError: MODULE_UNAVAILABLE when the module was given no NATS servers.
        """
        if self._resources.cache is None:
            raise self._without_nats("the cache (ctx.cache)")
        return self._resources.cache

    @property
    def nats(self) -> NatsClient:
        """The module's NATS connection, for what the SDK does not cover.

        Raises:
            MeshError: MODULE_UNAVAILABLE when the module was given no NATS servers.
        """
        if self._resources.nats is None:
            raise self._without_nats("a NATS connection (ctx.nats)")
        return self._resources.nats

    def _without_nats(self, what: str) -> MeshError:
        return MeshError(
            "MODULE_UNAVAILABLE",
            f"module {self.name} has no {what}: it was given no NATS servers at Initialize; "
            "run it in a mesh (`mesh up`) or give sdk.testing.ModuleHarness a NATS server",
            metadata={"module": self.name},
        )

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
        return await self._resources.publish(
            event_type, payload, tenant=tenant, company=company, subject=subject, event_id=event_id, durable=durable
        )

    def check_event(self, event_type: str, payload: Any, *, tenant: str | None = None) -> Any:
        """Make the checks `publish` makes, without publishing (the outbox makes them when an
        event is written, so that a refused one never reaches the table).

        Returns:
            The payload as it would be sent (a dict validated into the declared model).

        Raises:
            MeshError: UNDECLARED_EVENT or INVALID_EVENT, as `publish` does.
        """
        if self._checker is None:
            self._checker = Publisher(
                nats_client=None,
                manifest=self.manifest,
                manifest_path=str(self._manifest_path),
                module=self._module_class(),
                recorder=self._recorder,
                tracing=EventTracing(self.name),
            )
        return self._checker.check(event_type, payload, tenant)

    def _module_class(self) -> type | None:
        """The class the manifest's [run] entry names (imported by whoever loaded the module):
        its `event_models` are what payloads are checked against."""
        entry = self.manifest.run.entry
        if entry is None:
            return None
        module_path, _, class_name = entry.partition(":")
        python_module = sys.modules.get(f"{self._manifest_path.parent.name}.{module_path}")
        found = getattr(python_module, class_name, None)
        return found if isinstance(found, type) else None

    # --- storage ------------------------------------------------------------------

    async def database(self, filename: str, *, schema: str = "") -> Database:
        """Open (creating) a SQLite database in `state_dir` whose transactions publish events
        through an outbox: an event commits with the state change it announces, and is
        relayed to JetStream even across NATS outages and restarts.

            self.db = await ctx.database("orders.db", schema=SCHEMA)
            async with self.db.transaction() as tx:
                await tx.execute("INSERT INTO orders VALUES (?, ?)", (order_id, sku))
                tx.publish("order.created", OrderCreated(order_id=order_id, sku=sku))

        The outbox's depth and age are in the module's metrics (`outbox_depth`,
        `outbox_oldest_age_seconds`) and its health (`outbox_health`). Close the database
        in the stop hook.

        Args:
            filename: The file's name within `state_dir`, e.g. "orders.db".
            schema: Idempotent DDL run at open.

        Returns:
            The open database, its outbox relaying (events left by an earlier run first).
        """
        database = await Database.open(self.state_dir / filename, schema=schema, outbox=self)
        assert database.outbox is not None
        self._outboxes = [o for o in self._outboxes if o.label != database.outbox.label]
        self._outboxes.append(database.outbox)
        self._recorder.gauge("outbox_depth", lambda: float(sum(o.depth for o in self._outboxes)))
        self._recorder.gauge(
            "outbox_oldest_age_seconds", lambda: max((o.oldest_age_seconds for o in self._outboxes), default=0.0)
        )
        return database

    def outbox_health(self, max_age_seconds: float = OUTBOX_MAX_AGE_SECONDS) -> tuple[ComponentHealth, ...]:
        """The health of each outbox opened by `database`: DEGRADED when an event waited longer
        than `max_age_seconds` or was refused for good. The SDK adds it to the module's health."""
        return tuple(outbox.health(max_age_seconds) for outbox in self._outboxes)

    # --- dependencies -------------------------------------------------------------

    def has_dependency(self, name: str) -> bool:
        """True when dependency `name` is declared and available (an optional one may not be)."""
        self._require_declared(name)
        endpoint = self._resources.endpoint(name)
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
        return self._resources.client(name, stub_class)

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
        return self._resources.spawn(work, name)

    @property
    def active_workers(self) -> int:
        """How many background tasks are running."""
        return self._resources.active_workers

    # --- module-defined metrics ---------------------------------------------------

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Report `read()` under `name` in the module's metrics (e.g. a cache hit rate).
        Defining it again, as a Reload does, replaces the reader."""
        self._recorder.gauge(name, read)

    def counter(self, name: str) -> Counter:
        """A counter reported under `name` in the module's metrics; call `.add(n)`.
        Asking again, as a Reload does, returns the same counter with its count."""
        return self._recorder.counter(name)
