"""The coordinator's client of one module: the Lifecycle calls with deadlines, errors
turned into MeshError values."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf import duration_pb2

from mesh.protocol.errors import MeshError, error_info
from mesh.protocol.telemetry import client_interceptors
from mesh.protocol.transport import Transport
from mesh.v1 import health_pb2, lifecycle_pb2, lifecycle_pb2_grpc, metrics_pb2, module_pb2

T = TypeVar("T")

CALL_TIMEOUT_SECONDS = 120.0
"""Initialize and Start run the module's own hooks, which may legitimately take a while."""


class ModuleClient:
    """Calls one module's mesh.v1.Lifecycle at `address`, as the coordinator (`transport`
    presents its certificate; a module serves Lifecycle to no one else)."""

    def __init__(self, name: str, address: str, transport: Transport) -> None:
        self.name = name
        self.address = address
        self._channel = transport.channel(address, interceptors=client_interceptors())
        self._stub = lifecycle_pb2_grpc.LifecycleStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)  # None: cancel calls in flight at once

    async def describe(self, deadline_seconds: float = 10.0) -> lifecycle_pb2.DescribeResponse:
        return await self._call(
            "Describe", lambda: self._stub.Describe(lifecycle_pb2.DescribeRequest(), timeout=deadline_seconds)
        )

    async def initialize(self, settings: lifecycle_pb2.ModuleSettings) -> module_pb2.ModuleStatus:
        reply: lifecycle_pb2.InitializeResponse = await self._call(
            "Initialize",
            lambda: self._stub.Initialize(
                lifecycle_pb2.InitializeRequest(settings=settings), timeout=CALL_TIMEOUT_SECONDS
            ),
        )
        return reply.status

    async def start(self) -> module_pb2.ModuleStatus:
        reply: lifecycle_pb2.StartResponse = await self._call(
            "Start", lambda: self._stub.Start(lifecycle_pb2.StartRequest(), timeout=CALL_TIMEOUT_SECONDS)
        )
        return reply.status

    async def reload(self, settings: lifecycle_pb2.ModuleSettings) -> module_pb2.ModuleStatus:
        reply: lifecycle_pb2.ReloadResponse = await self._call(
            "Reload",
            lambda: self._stub.Reload(lifecycle_pb2.ReloadRequest(settings=settings), timeout=CALL_TIMEOUT_SECONDS),
        )
        return reply.status

    async def stop(self, grace_seconds: float, reason: str) -> lifecycle_pb2.StopResponse:
        grace = duration_pb2.Duration()
        grace.FromNanoseconds(int(grace_seconds * 1e9))
        return await self._call(
            "Stop",
            lambda: self._stub.Stop(lifecycle_pb2.StopRequest(grace=grace, reason=reason), timeout=grace_seconds + 10),
        )

    async def health(self, deadline_seconds: float) -> health_pb2.ModuleHealth:
        reply: lifecycle_pb2.GetHealthResponse = await self._call(
            "GetHealth", lambda: self._stub.GetHealth(lifecycle_pb2.GetHealthRequest(), timeout=deadline_seconds)
        )
        return reply.health

    async def metrics(self, deadline_seconds: float) -> metrics_pb2.ModuleMetrics:
        reply: lifecycle_pb2.GetMetricsResponse = await self._call(
            "GetMetrics", lambda: self._stub.GetMetrics(lifecycle_pb2.GetMetricsRequest(), timeout=deadline_seconds)
        )
        return reply.metrics

    async def _call(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            raise as_mesh_error(error, self.name, method, self.address) from None


def as_mesh_error(error: grpc.aio.AioRpcError, module: str, method: str, address: str) -> MeshError:
    """A failed call to a module as a MeshError: its own reason when it sent one."""
    info = error_info(error)
    if info is not None:
        return MeshError(info.reason, error.details() or "", metadata=dict(info.metadata), status=error.code())
    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return MeshError("TIMEOUT", f"module {module} did not answer {method} in time", metadata={"module": module})
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return MeshError(
            "MODULE_UNAVAILABLE",
            f"module {module} is not reachable at {address} ({method}): {error.details()}",
            metadata={"module": module},
        )
    return MeshError(
        "HOOK_FAILED",
        f"module {module} failed {method}: {error.code().name}: {error.details()}",
        metadata={"module": module},
        status=error.code(),
    )
