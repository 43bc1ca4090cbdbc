"""The mesh.v1.Coordinator service, with grpc.health.v1 and reflection, over the coordinator."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh.control.module_client import ModuleClient
from mesh.control.registry import now
from mesh.control.system import SystemHealth, collect_metrics, graph_response
from mesh.protocol.errors import MeshError, answer
from mesh.protocol.manifest import manifest_from_proto
from mesh.protocol.telemetry import server_interceptors
from mesh.v1 import (
    coordinator_pb2,
    coordinator_pb2_grpc,
    event_pb2,
    event_pb2_grpc,
    metrics_pb2,
    tenancy_pb2,
    tenancy_pb2_grpc,
)

if TYPE_CHECKING:
    from mesh.control.coordinator import Coordinator

T = TypeVar("T")

COORDINATOR_SERVICE = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name
TENANCY_SERVICE = tenancy_pb2.DESCRIPTOR.services_by_name["Tenancy"].full_name
EVENTS_SERVICE = event_pb2.DESCRIPTOR.services_by_name["Events"].full_name


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    """Answers mesh.v1.Coordinator from the coordinator's registry."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        self._registry = coordinator.registry
        config = coordinator.config
        self._health = SystemHealth(
            coordinator.registry, timeout=config.health_timeout_seconds, cache_seconds=config.health_cache_seconds
        )

    async def ListModules(self, request, context):
        wanted = set(request.states)
        return coordinator_pb2.ListModulesResponse(
            modules=[
                record.status()
                for record in self._registry.records.values()
                if not wanted or record.state.value in wanted
            ]
        )

    async def GetModule(self, request, context):
        record = await answer(context, lambda: self._coordinator.record_of(request.name))
        reply = coordinator_pb2.GetModuleResponse(
            status=record.status(), manifest=record.manifest_proto or record.manifest.to_proto()
        )
        if record.last_health is not None:
            reply.health.CopyFrom(record.last_health)
        if record.address:
            metrics = await collect_metrics_for(self._coordinator, record.name)
            if metrics is not None:
                reply.metrics.CopyFrom(metrics)
        return reply

    async def GetSystemHealth(self, request, context):
        return await self._health.check(fresh=request.fresh)

    async def GetSystemMetrics(self, request, context):
        return await collect_metrics(self._registry, self._coordinator.config.health_timeout_seconds)

    async def GetGraph(self, request, context):
        return graph_response(self._registry)

    async def ReloadModule(self, request, context):
        extra = json_format.MessageToDict(request.config) if request.HasField("config") else None
        record = await answer(context, lambda: self._coordinator.reload_module(request.name, extra))
        return coordinator_pb2.ReloadModuleResponse(status=record.status())

    async def RestartModule(self, request, context):
        record = await answer(context, lambda: self._coordinator.restart_module(request.name))
        return coordinator_pb2.RestartModuleResponse(status=record.status())

    async def RegisterModule(self, request, context):
        async def register():
            manifest_proto = request.manifest
            if not request.HasField("manifest"):
                client = ModuleClient("registering module", request.address)
                try:
                    manifest_proto = (await client.describe()).manifest
                finally:
                    await client.close()
            try:
                manifest = manifest_from_proto(manifest_proto, f"module registering from {request.address}")
            except ValueError as error:
                raise MeshError("INVALID_MANIFEST", str(error)) from None
            return await self._coordinator.register_module(
                request.address, manifest, manifest_proto, request.instance_id
            )

        if not request.address:
            await MeshError("INVALID_MANIFEST", "RegisterModule needs the module's address ('host:port')").abort(
                context
            )
        record = await answer(context, register)
        return coordinator_pb2.RegisterModuleResponse(status=record.status())

    async def DeregisterModule(self, request, context):
        record = await answer(
            context, lambda: self._coordinator.deregister_module(request.name, request.instance_id, request.force)
        )
        return coordinator_pb2.DeregisterModuleResponse(status=record.status())

    async def WatchModules(self, request, context):
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

    async def Shutdown(self, request, context):
        self._coordinator.shutdown_reason = request.reason or "Shutdown requested"
        self._coordinator.shutdown_requested.set()
        return coordinator_pb2.ShutdownResponse(pid=os.getpid())


async def collect_metrics_for(coordinator: Coordinator, name: str) -> metrics_pb2.ModuleMetrics | None:
    """One module's metrics, or None when it does not answer."""
    record = coordinator.registry.records[name]
    client = ModuleClient(name, record.address)
    try:
        return await client.metrics(coordinator.config.health_timeout_seconds)
    except MeshError:
        return None
    finally:
        await client.close()


async def serve(coordinator: Coordinator, listen: str) -> tuple[grpc.aio.Server, str]:
    """Start the coordinator's gRPC server on `listen`; returns it and its "host:port"."""
    server = grpc.aio.server(interceptors=server_interceptors(), options=[("grpc.so_reuseport", 0)])
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(coordinator), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [COORDINATOR_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
    if coordinator.tenancy is not None:
        tenancy_pb2_grpc.add_TenancyServicer_to_server(coordinator.tenancy, server)
        services.append(TENANCY_SERVICE)
    if coordinator.events_api is not None:
        event_pb2_grpc.add_EventsServicer_to_server(coordinator.events_api, server)
        services.append(EVENTS_SERVICE)
    reflection.enable_server_reflection(services, server)
    host = listen.rpartition(":")[0]
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"the coordinator cannot listen on {listen}; is the port in use? (--listen or MESH_LISTEN)")
    await server.start()
    for name in ("", COORDINATOR_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        # A wildcard is no address to reach: MESH_ADVERTISE_HOST says how others reach us.
        host = os.environ.get("MESH_ADVERTISE_HOST") or socket.gethostname()
    return server, f"{host}:{port}"
