"""The unit tier: a module instance, initialized in the test's own process, with its
dependencies given by the test (Nameko's `worker_factory` is the model).

No server, no NATS: `ctx.client(name, Stub)` hands out what the test gave for `name`,
`ctx.publish` records the event after the same checks a real publish makes, and the
module's gRPC methods and event handlers are called directly (decorators return them
unchanged). Use `ModuleHarness` for what needs the real thing: tenancy, the cache, event
delivery, the lifecycle over gRPC.

    async with UnitModule("modules/orders", clients={"inventory": FakeInventory()}) as unit:
        reply = await unit.module.PlaceOrder(request, unit.call(tenant="acme"))
        assert unit.published[0].event_type == "order.created"
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

import grpc
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel

from mesh.protocol.names import TENANT_METADATA
from mesh.v1 import lifecycle_pb2
from sdk._context import Context
from sdk._loader import load_module
from sdk._metrics import ModuleMetricsRecorder
from sdk._module import Module
from sdk._tenancy import ModuleCache, TenantView
from sdk.events import EventTracing, Publisher
from sdk.runtime import validated_config

ConfigT = TypeVar("ConfigT", bound=BaseModel)
StubT = TypeVar("StubT")


@dataclass(frozen=True)
class PublishedEvent:
    """An event the module published under the unit tier."""

    event_type: str
    payload: Any
    """As it would be sent: a dict given for a declared model is validated into the model."""
    event_id: str
    tenant: str = ""
    company: str = ""
    subject: str = ""
    durable: bool = True


class Aborted(Exception):
    """A gRPC method ended its call with `context.abort(code, details)`."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class CallContext:
    """Enough of `grpc.aio.ServicerContext` for calling a module's method directly: the
    call's metadata (its tenant), abort, and the code and details a method sets."""

    def __init__(self, metadata: Mapping[str, str]) -> None:
        self._metadata = tuple(metadata.items())
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = None) -> NoReturn:
        self._code, self._details = code, details
        raise Aborted(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details


class _UnitResources(Generic[ConfigT]):
    """The `Context`'s resources under the unit tier: the test's clients, recorded events."""

    def __init__(self, module_name: str, clients: Mapping[str, Any], publisher: Publisher) -> None:
        self._module_name = module_name
        self._clients = dict(clients)
        self._publisher = publisher
        self.published: list[PublishedEvent] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.tenants: TenantView[ConfigT] | None = None
        self.cache: ModuleCache | None = None
        self.nats: NatsClient | None = None

    @property
    def active_workers(self) -> int:
        return sum(not task.done() for task in self._tasks)

    def endpoint(self, name: str) -> lifecycle_pb2.DependencyEndpoint | None:
        if name not in self._clients:
            return None
        return lifecycle_pb2.DependencyEndpoint(name=name, address="unit-test", available=True)

    def client(self, name: str, stub_class: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        client: StubT = self._clients[name]
        return client

    async def publish(self, event_type: str, payload: Any, **attributes: Any) -> str:
        checked = self._publisher.check(event_type, payload, attributes.get("tenant"))
        event_id = attributes.get("event_id") or uuid.uuid4().hex
        self.published.append(
            PublishedEvent(
                event_type=event_type,
                payload=checked,
                event_id=event_id,
                tenant=attributes.get("tenant") or "",
                company=attributes.get("company") or "",
                subject=attributes.get("subject") or "",
                durable=attributes.get("durable", True),
            )
        )
        return str(event_id)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work, name=f"{self._module_name}:{name}")
        self._tasks.add(task)
        return task

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class UnitModule:
    """A module instance with its `initialize` hook run against a context the test shapes.

    Args:
        module_dir: The module's folder (holding module.toml).
        config: The configuration, validated against the module's config model.
        clients: What `ctx.client(name, ...)` returns, by dependency name (any object: a
            fake servicer, a stub to a harness). A dependency left out is unavailable.
        start: Run the module's `start` hook too.
    """

    def __init__(
        self,
        module_dir: Path | str,
        *,
        config: Mapping[str, Any] | None = None,
        clients: Mapping[str, Any] | None = None,
        start: bool = True,
    ) -> None:
        self._module_dir = Path(module_dir)
        self._config = dict(config or {})
        self._clients = dict(clients or {})
        self._start = start
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._resources: _UnitResources[Any] | None = None
        self._module: Module | None = None
        self._context: Context[Any] | None = None
        self.recorder: ModuleMetricsRecorder | None = None

    async def __aenter__(self) -> UnitModule:
        loaded = load_module(self._module_dir)
        manifest = loaded.manifest
        undeclared = sorted(set(self._clients) - {d.name for d in manifest.dependencies})
        if undeclared:
            raise ValueError(f"UnitModule: clients {undeclared} are not dependencies in {loaded.manifest_path}")
        module = loaded.module_class()
        config = validated_config(module.config_model, self._config, manifest.name)
        self.recorder = ModuleMetricsRecorder(manifest.name, frozenset())
        publisher = Publisher(
            nats_client=None,
            manifest=manifest,
            manifest_path=str(loaded.manifest_path),
            module=module,
            recorder=self.recorder,
            tracing=EventTracing(manifest.name),
        )
        self._resources = _UnitResources(manifest.name, self._clients, publisher)
        self._scratch = tempfile.TemporaryDirectory(prefix=f"mesh-unit-{manifest.name}-")
        self._context = Context(
            manifest=manifest,
            manifest_path=loaded.manifest_path,
            config=config,
            state_dir=Path(self._scratch.name),
            resources=self._resources,
            recorder=self.recorder,
        )
        self._module = module
        try:
            await module.initialize(self._context)
            if self._start:
                await module.start()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._module is not None:
                await self._module.stop()
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._resources is not None:
            await self._resources.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    @property
    def module(self) -> Any:
        """The module instance (typed Any: it is the module's own class, with its methods)."""
        if self._module is None:
            raise RuntimeError("UnitModule has not run yet; use it inside `async with`")
        return self._module

    @property
    def context(self) -> Context[Any]:
        """The context the module was initialized with."""
        if self._context is None:
            raise RuntimeError("UnitModule has not run yet; use it inside `async with`")
        return self._context

    @property
    def published(self) -> list[PublishedEvent]:
        """Every event the module published, in order."""
        return self._resources.published if self._resources is not None else []

    def call(self, *, tenant: str = "", metadata: Mapping[str, str] | None = None) -> CallContext:
        """A context for calling one of the module's gRPC methods directly, as `tenant`."""
        values = dict(metadata or {})
        if tenant:
            values[TENANT_METADATA] = tenant
        return CallContext(values)
