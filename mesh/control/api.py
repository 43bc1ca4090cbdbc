"""The mesh.v1.Coordinator service, and the coordinator's gRPC server (with the Tenancy and
Events services, grpc.health.v1 and reflection).

Every request is untrusted input: a malformed one is refused with INVALID_ARGUMENT,
FAILED_PRECONDITION or NOT_FOUND and a short message, never answered UNKNOWN.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh.control.access import AccessInterceptor, may_register
from mesh.control.events_api import EventsServicer
from mesh.control.module_client import ModuleClient
from mesh.control.operations import MeshOperations
from mesh.control.registry import ModuleRecord, now
from mesh.control.system import SystemHealth, collect_metrics, graph_response
from mesh.control.tenancy import TenancyServicer, config_schema
from mesh.protocol.errors import MeshError, answer, excerpt
from mesh.protocol.identity import identity_of
from mesh.protocol.layers import config_from_struct
from mesh.protocol.manifest import manifest_from_proto
from mesh.protocol.telemetry import server_interceptors
from mesh.protocol.transport import InsecureBindRefused, Transport
from mesh.v1 import (
    coordinator_pb2,
    coordinator_pb2_grpc,
    event_pb2,
    event_pb2_grpc,
    metrics_pb2,
    tenancy_pb2,
    tenancy_pb2_grpc,
)

Context = grpc.aio.ServicerContext[Any, Any]

COORDINATOR_SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name
TENANCY_SERVICE = tenancy_pb2.DESCRIPTOR.services_by_name["Tenancy"].full_name
EVENTS_SERVICE = event_pb2.DESCRIPTOR.services_by_name["Events"].full_name

MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024
"""The largest request the coordinator reads (grpc's default, stated: an event published
through it is at most NATS's max_payload, a manifest a few KB)."""
MAX_CONCURRENT_RPCS = 1024
"""Calls served at once, watchers included; past it a call is refused RESOURCE_EXHAUSTED
instead of the coordinator taking memory for every caller that piles up."""
MAX_ADDRESS_CHARS = 255
MAX_INSTANCE_ID_CHARS = 128


def check_registration(address: str, instance_id: str) -> None:
    """Refuse an address that is no `host:port` or an instance id no log line should hold.

    Raises:
        MeshError: INVALID_MANIFEST, naming the field and the form expected.
    """
    host, _, port = address.rpartition(":")
    if (
        len(address) > MAX_ADDRESS_CHARS
        or not host
        or not port.isdecimal()
        or not 0 < int(port) < 65536
        or not all(c.isprintable() and not c.isspace() for c in address)
    ):
        raise MeshError(
            "INVALID_MANIFEST",
            f"address {excerpt(address)} is not 'host:port'; RegisterModule needs the address others reach "
            "the module at, e.g. '10.0.0.5:7000'",
        )
    if len(instance_id) > MAX_INSTANCE_ID_CHARS or not instance_id.isprintable():
        raise MeshError(
            "INVALID_MANIFEST",
            f"instance_id {excerpt(instance_id)} is not valid: use at most {MAX_INSTANCE_ID_CHARS} printable "
            "characters, e.g. a UUID",
        )


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    """Answers mesh.v1.Coordinator from the control plane's operations and registry."""

    def __init__(
        self,
        operations: MeshOperations,
        health: SystemHealth,
        transport: Transport,
        *,
        metrics_timeout_seconds: float,
    ) -> None:
        self._operations = operations
        self._transport = transport
        self._registry = operations.registry
        self._health = health
        self._metrics_timeout_seconds = metrics_timeout_seconds

    async def ListModules(
        self, request: coordinator_pb2.ListModulesRequest, context: Context
    ) -> coordinator_pb2.ListModulesResponse:
        wanted = set(request.states)
        return coordinator_pb2.ListModulesResponse(
            modules=[
                record.status()
                for record in self._registry.records.values()
                if not wanted or record.state.value in wanted
            ]
        )

    async def GetModule(
        self, request: coordinator_pb2.GetModuleRequest, context: Context
    ) -> coordinator_pb2.GetModuleResponse:
        record = await answer(context, lambda: self._operations.record_of(request.name))
        reply = coordinator_pb2.GetModuleResponse(
            status=record.status(), manifest=record.manifest_proto or record.manifest.to_proto()
        )
        if record.last_health is not None:
            reply.health.CopyFrom(record.last_health)
        if record.address:
            metrics = await self._metrics_of(record)
            if metrics is not None:
                reply.metrics.CopyFrom(metrics)
        return reply

    async def _metrics_of(self, record: ModuleRecord) -> metrics_pb2.ModuleMetrics | None:
        """One module's metrics, or None when it does not answer."""
        client = ModuleClient(record.name, record.address, self._transport)
        try:
            return await client.metrics(self._metrics_timeout_seconds)
        except MeshError:
            return None
        finally:
            await client.close()

    async def GetSystemHealth(
        self, request: coordinator_pb2.GetSystemHealthRequest, context: Context
    ) -> coordinator_pb2.GetSystemHealthResponse:
        return await self._health.check(fresh=request.fresh)

    async def GetSystemMetrics(
        self, request: coordinator_pb2.GetSystemMetricsRequest, context: Context
    ) -> coordinator_pb2.GetSystemMetricsResponse:
        return await collect_metrics(self._registry, self._metrics_timeout_seconds, self._transport)

    async def GetGraph(
        self, request: coordinator_pb2.GetGraphRequest, context: Context
    ) -> coordinator_pb2.GetGraphResponse:
        return graph_response(self._registry)

    async def ReloadModule(
        self, request: coordinator_pb2.ReloadModuleRequest, context: Context
    ) -> coordinator_pb2.ReloadModuleResponse:
        async def reload() -> ModuleRecord:
            extra = None
            if request.HasField("config"):
                extra = config_from_struct(request.config, f"the configuration for module {excerpt(request.name)}")
            return await self._operations.reload_module(request.name, extra)

        record = await answer(context, reload)
        return coordinator_pb2.ReloadModuleResponse(status=record.status())

    async def RestartModule(
        self, request: coordinator_pb2.RestartModuleRequest, context: Context
    ) -> coordinator_pb2.RestartModuleResponse:
        record = await answer(context, lambda: self._operations.restart_module(request.name))
        return coordinator_pb2.RestartModuleResponse(status=record.status())

    async def RegisterModule(
        self, request: coordinator_pb2.RegisterModuleRequest, context: Context
    ) -> coordinator_pb2.RegisterModuleResponse:
        async def register() -> ModuleRecord:
            check_registration(request.address, request.instance_id)
            manifest_proto = request.manifest
            if not request.HasField("manifest"):
                client = ModuleClient("registering module", request.address, self._transport)
                try:
                    manifest_proto = (await client.describe()).manifest
                finally:
                    await client.close()
            try:
                manifest = manifest_from_proto(manifest_proto, f"module registering from {request.address}")
            except ValueError as error:
                raise MeshError("INVALID_MANIFEST", str(error)) from None
            refused = may_register(identity_of(context), manifest.name)
            if refused is not None:
                raise refused
            if manifest_proto.config_schema_json:
                config_schema(manifest_proto.config_schema_json, manifest.name)
            return await self._operations.register_module(
                request.address, manifest, manifest_proto, request.instance_id
            )

        if not request.address:
            await MeshError("INVALID_MANIFEST", "RegisterModule needs the module's address ('host:port')").abort(
                context
            )
        record = await answer(context, register)
        return coordinator_pb2.RegisterModuleResponse(status=record.status())

    async def DeregisterModule(
        self, request: coordinator_pb2.DeregisterModuleRequest, context: Context
    ) -> coordinator_pb2.DeregisterModuleResponse:
        record = await answer(
            context, lambda: self._operations.deregister_module(request.name, request.instance_id, request.force)
        )
        return coordinator_pb2.DeregisterModuleResponse(status=record.status())

    async def WatchModules(
        self, request: coordinator_pb2.WatchModulesRequest, context: Context
    ) -> AsyncIterator[coordinator_pb2.WatchModulesResponse]:
        names = set(request.names)
        queue = self._registry.watch()
        try:
            if request.include_snapshot:
                for record in list(self._registry.records.values()):
                    if not names or record.name in names:
                        yield coordinator_pb2.WatchModulesResponse(status=record.status(), snapshot=True, time=now())
            while True:
                change = await queue.get()
                if not names or change.status.name in names:
                    yield change
        finally:
            self._registry.unwatch(queue)

    async def Shutdown(
        self, request: coordinator_pb2.ShutdownRequest, context: Context
    ) -> coordinator_pb2.ShutdownResponse:
        self._operations.request_shutdown(request.reason or "Shutdown requested")
        return coordinator_pb2.ShutdownResponse(pid=os.getpid())


_TAKEN = "the coordinator cannot listen on {listen}; is the port in use? (--listen or MESH_LISTEN)"


def check_listen(listen: str) -> None:
    """Refuse an address whose port another process listens on, before anything starts (and
    before gRPC logs its own bind error to stderr).

    Raises:
        OSError: the port is taken.
    """
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return  # any free port, or an address gRPC itself will refuse with its message
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        return
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError:
            raise OSError(_TAKEN.format(listen=listen)) from None


async def serve(
    listen: str,
    coordinator: CoordinatorServicer,
    transport: Transport,
    *,
    tenancy: TenancyServicer | None = None,
    events: EventsServicer | None = None,
) -> tuple[grpc.aio.Server, str]:
    """Start the coordinator's gRPC server.

    Args:
        listen: "host:port" to bind (port 0: any free port).
        coordinator: The mesh.v1.Coordinator servicer.
        transport: mTLS with the coordinator's credentials (and the access rules), or plaintext.
        tenancy: The mesh.v1.Tenancy servicer, when the mesh has NATS.
        events: The mesh.v1.Events servicer, when the mesh has NATS.

    Returns:
        The server and the "host:port" others reach it at.

    Raises:
        OSError: `listen` cannot be bound.
        InsecureBindRefused: plaintext asked for on a non-loopback address.
    """
    # Access first: a refused call never reaches telemetry's handlers or a servicer.
    access = [AccessInterceptor()] if transport.secure else []
    server = grpc.aio.server(
        interceptors=[*access, *server_interceptors()],
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES)],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(coordinator, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc_health-stubs lack health.aio
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [COORDINATOR_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
    if tenancy is not None:
        tenancy_pb2_grpc.add_TenancyServicer_to_server(tenancy, server)
        services.append(TENANCY_SERVICE)
    if events is not None:
        event_pb2_grpc.add_EventsServicer_to_server(events, server)
        services.append(EVENTS_SERVICE)
    reflection.enable_server_reflection(services, server)
    host = listen.rpartition(":")[0]
    try:
        port = transport.add_port(server, listen)
    except InsecureBindRefused:
        raise
    except RuntimeError:  # grpc's way of saying the address cannot be bound
        port = 0
    if port == 0:
        raise OSError(_TAKEN.format(listen=listen))
    await server.start()
    for name in ("", COORDINATOR_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        # A wildcard is no address to reach: MESH_ADVERTISE_HOST says how others reach us.
        host = os.environ.get("MESH_ADVERTISE_HOST") or socket.gethostname()
    return server, f"{host}:{port}"
