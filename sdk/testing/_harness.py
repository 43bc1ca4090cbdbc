"""ModuleHarness: one module served in the test's own process, with its lifecycle at hand.

Served as in a mesh: over mTLS with a module certificate from a certificate authority of the
test's own, called by the harness as the coordinator. Harnesses that call one another (one
given as another's dependency) share one authority: the `module_harness` fixture passes its
test's; otherwise pass `authority=`."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import nats
from google.protobuf import duration_pb2, struct_pb2
from grpc_health.v1 import health_pb2_grpc
from nats.aio.client import Client as NatsClient

from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import CloudEvent
from mesh.protocol.identity import COORDINATOR_NAME, module_identity
from mesh.protocol.names import event_subject, matches
from mesh.protocol.nats_server import EmbeddedNats
from mesh.protocol.pki import CertificateAuthority
from mesh.protocol.states import State
from mesh.protocol.transport import Transport
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from sdk._context import Context
from sdk._loader import load_module
from sdk._module import Module
from sdk.events import DeliveryReport, Outcome, codec_for, content_type_of
from sdk.runtime import ModuleServer
from sdk.testing._stand_in import StandIn
from sdk.testing._waiting import WAIT_SECONDS

StubT = TypeVar("StubT")


class ModuleHarness:
    """One module served in the test's own process, with its lifecycle at hand.

    Args:
        module_dir: The module's folder (holding module.toml).
        config: The configuration passed at Initialize.
        dependencies: The address of each dependency, by name (e.g. another harness's).
            Every required dependency must be given, here or in `stand_ins`; optional ones
            left out are reported as unavailable.
        stand_ins: Servicers to serve in the place of a dependency, by name: e.g.
            `{"orders": [FakeOrders()]}`, a subclass of `orders_pb2_grpc.OrdersServicer`
            overriding what the module calls (the rest answers UNIMPLEMENTED); `[]` serves
            nothing, for a dependency the test does not call.
        nats: The NATS to use: a running EmbeddedNats, a URL, or None to start a private one.
        start: Initialize and start the module on entry (False leaves it REGISTERED).
        port: The port to serve on; None picks a free one.
        authority: The certificate authority that issues the module's certificate and the
            harness's own (the coordinator's); None makes one for this harness alone.
    """

    def __init__(
        self,
        module_dir: Path | str,
        *,
        config: Mapping[str, Any] | None = None,
        dependencies: Mapping[str, str] | None = None,
        stand_ins: Mapping[str, Sequence[object]] | None = None,
        nats: EmbeddedNats | str | None = None,
        start: bool = True,
        port: int | None = None,
        authority: CertificateAuthority | None = None,
    ) -> None:
        self._module_dir = Path(module_dir)
        self._config = dict(config or {})
        self._dependencies = dict(dependencies or {})
        self._nats_given = nats
        self._start = start
        self._port = port or 0
        self.authority = authority or CertificateAuthority.create()
        """Issues the certificates of this harness (and of the others sharing it)."""
        self._stand_ins = [StandIn(name, servicers, self.authority) for name, servicers in (stand_ins or {}).items()]
        self._own_nats: EmbeddedNats | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._other_channels: list[grpc.aio.Channel] = []
        self.server: ModuleServer | None = None
        self._module: Module | None = None
        self._nats_client: NatsClient | None = None
        self.nats_url = ""

    # --- entering and leaving -----------------------------------------------------

    async def __aenter__(self) -> ModuleHarness:
        try:
            await self._open()
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
        await self._close()

    async def _open(self) -> None:
        loaded = load_module(self._module_dir)
        self._check_dependencies(loaded.manifest.dependencies)
        if isinstance(self._nats_given, EmbeddedNats):
            self.nats_url = self._nats_given.url
        elif isinstance(self._nats_given, str):
            self.nats_url = self._nats_given
        else:
            self._own_nats = EmbeddedNats()
            await self._own_nats.__aenter__()
            self.nats_url = self._own_nats.url
        self._scratch = tempfile.TemporaryDirectory(prefix=f"mesh-{loaded.manifest.name}-")
        for stand_in in self._stand_ins:
            await stand_in.start(Path(self._scratch.name))
        credentials = Path(self._scratch.name) / "pki"
        self.authority.issue(module_identity(loaded.manifest.name).common_name).write(credentials)
        self.server = ModuleServer(
            loaded,
            transport=Transport(credentials),
            port=self._port,
            state_dir=Path(self._scratch.name) / "state",
        )
        self._module = self.server.module
        await self.server.start()
        self._channel = self._dial(COORDINATOR_NAME)
        if self._start:
            await self.initialize()
            await self.start()

    def _check_dependencies(self, declared: list[Any]) -> None:
        stood_in = {stand_in.name for stand_in in self._stand_ins}
        both = sorted(stood_in & set(self._dependencies))
        if both:
            raise ValueError(f"ModuleHarness: {both} given both in dependencies= and in stand_ins=; keep one")
        unknown = sorted((set(self._dependencies) | stood_in) - {d.name for d in declared})
        if unknown:
            raise ValueError(
                f"ModuleHarness: dependencies {unknown} are not declared in {self._module_dir}/module.toml"
            )
        given = set(self._dependencies) | stood_in
        missing = [d.name for d in declared if not d.optional and d.name not in given]
        if missing:
            addresses = ", ".join(f"'{name}': address" for name in missing)
            fakes = ", ".join(f"'{name}': []" for name in missing)
            raise ValueError(
                f"ModuleHarness: {self._module_dir} requires {missing}; pass dependencies={{{addresses}}} "
                f"(e.g. the address of another harness) or stand_ins={{{fakes}}} (servicers to serve in its place)"
            )

    async def _close(self) -> None:
        if self.server is not None:
            await self.server.shutdown(grace_seconds=5.0)
            self.server = None
        for stand_in in self._stand_ins:
            await stand_in.stop()
        for channel in [*self._other_channels, *([self._channel] if self._channel else [])]:
            await channel.close(None)
        self._other_channels.clear()
        self._channel = None
        if self._nats_client is not None:
            await self._nats_client.close()
            self._nats_client = None
        if self._own_nats is not None:
            await self._own_nats.__aexit__(None, None, None)
            self._own_nats = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    # --- what a test uses ---------------------------------------------------------

    @property
    def address(self) -> str:
        """The module's "host:port"."""
        return self._server().address

    @property
    def module(self) -> Module:
        """The module instance, for looking at its state in a test (also after the harness closed)."""
        if self._module is None:
            raise RuntimeError("the harness has not run yet; use it inside `async with`")
        return self._module

    @property
    def context(self) -> Context[Any]:
        """The module's current context (config, tenants, cache, ...); set from Initialize on."""
        context = self._server().runtime.context
        if context is None:
            raise RuntimeError("the module has no context before Initialize (or after Stop)")
        return context

    @property
    def state(self) -> State:
        """The module's lifecycle state."""
        return self._server().runtime.state

    @property
    def channel(self) -> grpc.aio.Channel:
        """A channel to the module, presenting the coordinator's certificate."""
        if self._channel is None:
            raise RuntimeError("the harness is not running; use it inside `async with`")
        return self._channel

    def channel_as(self, common_name: str) -> grpc.aio.Channel:
        """A channel to the module presenting a certificate for another identity, e.g.
        "module:orders" or "operator:viewer:ada" (closed with the harness).

        Args:
            common_name: The identity the certificate names (see `mesh.protocol.identity`).
        """
        self._server()
        channel = self._dial(common_name)
        self._other_channels.append(channel)
        return channel

    def _dial(self, common_name: str) -> grpc.aio.Channel:
        credentials = self.authority.issue(common_name, lifetime_seconds=3600.0)
        return grpc.aio.secure_channel(self._server().address, credentials.channel_credentials())

    def stub(self, stub_class: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        """A stub of any service the module serves, e.g. `harness.stub(GreeterStub)`."""
        return stub_class(self.channel)

    @property
    def lifecycle(self) -> lifecycle_pb2_grpc.LifecycleStub:
        """A mesh.v1.Lifecycle stub to the module."""
        return lifecycle_pb2_grpc.LifecycleStub(self.channel)

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        """A grpc.health.v1.Health stub to the module."""
        return health_pb2_grpc.HealthStub(self.channel)

    def settings(self, config: Mapping[str, Any] | None = None) -> lifecycle_pb2.ModuleSettings:
        """The ModuleSettings the harness sends: config, dependency endpoints, NATS, state folder."""
        manifest = self._server().loaded.manifest
        addresses = {**self._dependencies, **{stand_in.name: stand_in.address for stand_in in self._stand_ins}}
        struct = struct_pb2.Struct()
        struct.update(dict(self._config if config is None else config))
        endpoints = [
            lifecycle_pb2.DependencyEndpoint(
                name=dependency.name,
                address=addresses.get(dependency.name, ""),
                optional=dependency.optional,
                available=dependency.name in addresses,
            )
            for dependency in manifest.dependencies
        ]
        return lifecycle_pb2.ModuleSettings(
            config=struct,
            dependencies=endpoints,
            nats=lifecycle_pb2.NatsSettings(servers=[self.nats_url]),
            state_dir=str(self._server().runtime.default_state_dir),
        )

    async def initialize(self, config: Mapping[str, Any] | None = None) -> lifecycle_pb2.InitializeResponse:
        """Call Initialize (with the harness's config unless `config` is given)."""
        response: lifecycle_pb2.InitializeResponse = await self.lifecycle.Initialize(
            lifecycle_pb2.InitializeRequest(settings=self.settings(config))
        )
        return response

    async def start(self) -> lifecycle_pb2.StartResponse:
        """Call Start."""
        response: lifecycle_pb2.StartResponse = await self.lifecycle.Start(lifecycle_pb2.StartRequest())
        return response

    async def stop(self, grace_seconds: float | None = None) -> lifecycle_pb2.StopResponse:
        """Call Stop, with the module's default grace unless one is given."""
        request = lifecycle_pb2.StopRequest(reason="test")
        if grace_seconds is not None:
            request.grace.CopyFrom(
                duration_pb2.Duration(nanos=int((grace_seconds % 1) * 1e9), seconds=int(grace_seconds))
            )
        response: lifecycle_pb2.StopResponse = await self.lifecycle.Stop(request)
        return response

    async def reload(self, config: Mapping[str, Any] | None = None) -> lifecycle_pb2.ReloadResponse:
        """Call Reload with new configuration."""
        response: lifecycle_pb2.ReloadResponse = await self.lifecycle.Reload(
            lifecycle_pb2.ReloadRequest(settings=self.settings(config))
        )
        return response

    # --- events -------------------------------------------------------------------

    async def publish(
        self,
        event_type: str,
        payload: Any,
        *,
        tenant: str = "",
        company: str = "",
        subject: str = "",
        event_id: str = "",
        source: str = "mesh://sdk.testing",
        within: float = WAIT_SECONDS,
    ) -> dict[str, Outcome]:
        """Deliver one event to the module under test, as another module would publish it,
        and return once every handler of the module that takes its type is done with it.

        "Done" is acked, dropped, skipped (a tenant the module is not enabled for),
        dead-lettered, or failed for an ephemeral handler; redeliveries are waited through.
        So a test asserts on the handler's effects right after, with no polling.

        Args:
            event_type: The event's type, e.g. "order.created".
            payload: A pydantic model, a protobuf message, bytes or JSON data, encoded as
                `ctx.publish` encodes it.
            tenant: The tenant the event belongs to.
            within: Seconds to wait for the handlers.

        Returns:
            Each handler's final outcome, by handler method name.

        Raises:
            ValueError: The module has no handler for `event_type`.
            AssertionError: Some handler was not done with the event within `within` seconds.
        """
        server = self._server()
        handlers = {b.method_name for b in server.handlers if matches(b.options.pattern, event_type)}
        if not handlers:
            patterns = ", ".join(sorted(b.options.pattern for b in server.handlers)) or "none"
            raise ValueError(
                f"module {server.loaded.manifest.name} has no handler for '{event_type}' (its handlers take: "
                f"{patterns}); publish a type it subscribes to"
            )
        event_id = event_id or uuid.uuid4().hex
        finals: dict[str, Outcome] = {}
        all_done = asyncio.Event()

        def observe(report: DeliveryReport) -> None:
            if report.event_id == event_id and report.final and report.handler in handlers:
                finals[report.handler] = report.outcome
                if len(finals) == len(handlers):
                    all_done.set()

        observers = server.runtime.delivery_observers
        observers.append(observe)
        try:
            body = codec_for(type(payload)).encode(payload)
            event = CloudEvent(
                id=event_id,
                type=event_type,
                source=source,
                time=cloudevents.now(),
                subject=subject,
                tenant=tenant,
                company=company,
                datacontenttype=content_type_of(payload),
            )
            publisher = await self._publisher()
            await publisher.jetstream().publish(
                event_subject(event_type, tenant or None), body, headers=cloudevents.to_nats(event)
            )
            try:
                async with asyncio.timeout(within):
                    await all_done.wait()
            except TimeoutError:
                waiting = ", ".join(sorted(handlers - set(finals)))
                raise AssertionError(
                    f"handler(s) {waiting} of module {server.loaded.manifest.name} were not done with event "
                    f"{event_id} ({event_type}) within {within:.0f} s; is the module RUNNING?"
                ) from None
        finally:
            observers.remove(observe)
        return finals

    async def _publisher(self) -> NatsClient:
        """The harness's own NATS connection (the module's is its own business)."""
        if self._nats_client is None:
            self._nats_client = await nats.connect(self.nats_url, name="sdk.testing")
        return self._nats_client

    def _server(self) -> ModuleServer:
        if self.server is None:
            raise RuntimeError("the harness is not running; use it inside `async with`")
        return self.server
