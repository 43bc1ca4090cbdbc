"""The mesh.v1.Lifecycle servicer: translates calls to the module runtime and errors to
gRPC statuses with ErrorInfo."""

from __future__ import annotations

from typing import Any

import grpc

from mesh.protocol.errors import answer
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from sdk.runtime._runtime import ModuleRuntime

ServicerContext = grpc.aio.ServicerContext[Any, Any]


class LifecycleServicer(lifecycle_pb2_grpc.LifecycleServicer):
    """Serves mesh.v1.Lifecycle for one module runtime."""

    def __init__(self, runtime: ModuleRuntime, config_schema_json: str) -> None:
        self._runtime = runtime
        self._manifest_proto = runtime.manifest.to_proto(config_schema_json)

    async def Describe(
        self, request: lifecycle_pb2.DescribeRequest, context: ServicerContext
    ) -> lifecycle_pb2.DescribeResponse:
        return lifecycle_pb2.DescribeResponse(manifest=self._manifest_proto, status=self._runtime.status())

    async def Initialize(
        self, request: lifecycle_pb2.InitializeRequest, context: ServicerContext
    ) -> lifecycle_pb2.InitializeResponse:
        await answer(context, lambda: self._runtime.initialize(request.settings))
        return lifecycle_pb2.InitializeResponse(status=self._runtime.status())

    async def Start(self, request: lifecycle_pb2.StartRequest, context: ServicerContext) -> lifecycle_pb2.StartResponse:
        await answer(context, self._runtime.start)
        return lifecycle_pb2.StartResponse(status=self._runtime.status())

    async def Stop(self, request: lifecycle_pb2.StopRequest, context: ServicerContext) -> lifecycle_pb2.StopResponse:
        grace = request.grace.ToNanoseconds() / 1e9 if request.HasField("grace") else None
        forced = await answer(context, lambda: self._runtime.stop(grace, request.reason))
        return lifecycle_pb2.StopResponse(status=self._runtime.status(), forced=forced)

    async def Reload(
        self, request: lifecycle_pb2.ReloadRequest, context: ServicerContext
    ) -> lifecycle_pb2.ReloadResponse:
        await answer(context, lambda: self._runtime.reload(request.settings))
        return lifecycle_pb2.ReloadResponse(status=self._runtime.status())

    async def GetHealth(
        self, request: lifecycle_pb2.GetHealthRequest, context: ServicerContext
    ) -> lifecycle_pb2.GetHealthResponse:
        return lifecycle_pb2.GetHealthResponse(health=await self._runtime.check_health())

    async def GetMetrics(
        self, request: lifecycle_pb2.GetMetricsRequest, context: ServicerContext
    ) -> lifecycle_pb2.GetMetricsResponse:
        return lifecycle_pb2.GetMetricsResponse(metrics=self._runtime.recorder.snapshot())
