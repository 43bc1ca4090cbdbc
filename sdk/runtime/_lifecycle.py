"""The mesh.v1.Lifecycle servicer: translates calls to the module runtime and errors to
gRPC statuses with ErrorInfo.

A transition runs to its end even when its caller goes away (a coordinator aborting
start-up cancels the calls it has in flight): cut in half, it would leave the module
INITIALIZING or STARTING, where no call is legal, and its stop hook would never run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mesh.protocol.errors import answer
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from sdk.runtime._runtime import ModuleRuntime

ServicerContext = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")

_log = logging.getLogger("sdk")


class LifecycleServicer(lifecycle_pb2_grpc.LifecycleServicer):
    """Serves mesh.v1.Lifecycle for one module runtime."""

    def __init__(self, runtime: ModuleRuntime, config_schema_json: str) -> None:
        self._runtime = runtime
        self._manifest_proto = runtime.manifest.to_proto(config_schema_json)
        self.orphans: set[asyncio.Task[Any]] = set()
        """Transitions still running after their caller went away."""

    async def _transition(self, context: ServicerContext, change: Callable[[], Awaitable[T]]) -> T:
        """Run a state change shielded from the call's cancellation; its errors answer the call."""
        task: asyncio.Task[T] = asyncio.ensure_future(change())
        try:
            return await answer(context, asyncio.shield(task))
        except asyncio.CancelledError:
            if not task.done():  # the caller went away: let the change finish on its own
                self.orphans.add(task)
                task.add_done_callback(self._orphan_done)
            raise

    def _orphan_done(self, task: asyncio.Task[Any]) -> None:
        self.orphans.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning(
                "module %s: a lifecycle call whose caller left failed: %s",
                self._runtime.manifest.name,
                task.exception(),
            )

    async def Describe(
        self, request: lifecycle_pb2.DescribeRequest, context: ServicerContext
    ) -> lifecycle_pb2.DescribeResponse:
        return lifecycle_pb2.DescribeResponse(
            manifest=self._manifest_proto, status=self._runtime.status(), consumers=self._runtime.consumers()
        )

    async def Initialize(
        self, request: lifecycle_pb2.InitializeRequest, context: ServicerContext
    ) -> lifecycle_pb2.InitializeResponse:
        await self._transition(context, lambda: self._runtime.initialize(request.settings))
        return lifecycle_pb2.InitializeResponse(status=self._runtime.status())

    async def Start(self, request: lifecycle_pb2.StartRequest, context: ServicerContext) -> lifecycle_pb2.StartResponse:
        await self._transition(context, self._runtime.start)
        return lifecycle_pb2.StartResponse(status=self._runtime.status())

    async def Stop(self, request: lifecycle_pb2.StopRequest, context: ServicerContext) -> lifecycle_pb2.StopResponse:
        grace = request.grace.ToNanoseconds() / 1e9 if request.HasField("grace") else None
        forced = await self._transition(context, lambda: self._runtime.stop(grace, request.reason))
        return lifecycle_pb2.StopResponse(status=self._runtime.status(), forced=forced)

    async def Reload(
        self, request: lifecycle_pb2.ReloadRequest, context: ServicerContext
    ) -> lifecycle_pb2.ReloadResponse:
        await self._transition(context, lambda: self._runtime.reload(request.settings))
        return lifecycle_pb2.ReloadResponse(status=self._runtime.status())

    async def GetHealth(
        self, request: lifecycle_pb2.GetHealthRequest, context: ServicerContext
    ) -> lifecycle_pb2.GetHealthResponse:
        return lifecycle_pb2.GetHealthResponse(health=await self._runtime.check_health())

    async def GetMetrics(
        self, request: lifecycle_pb2.GetMetricsRequest, context: ServicerContext
    ) -> lifecycle_pb2.GetMetricsResponse:
        return lifecycle_pb2.GetMetricsResponse(metrics=self._runtime.recorder.snapshot())
