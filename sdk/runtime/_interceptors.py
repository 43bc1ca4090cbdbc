"""The module server's interceptor: request metrics for every call, and a gate that may
refuse it (who is calling; the module's own services closed until RUNNING; the tenant guard).

Written by hand because it must see every call kind (unary and streaming, wrapped by
`mesh.protocol.guarded_handlers`, as the coordinator's access checks are) with the module's
state at hand, and cost no more than a clock read and a dict update per call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from mesh.protocol.errors import MeshError
from mesh.protocol.guarded_handlers import Observer, guarded_handler
from sdk._metrics import ModuleMetricsRecorder

Gate = Callable[[str, Mapping[str, str], grpc.aio.ServicerContext[Any, Any]], MeshError | None]
"""Given a full method name, the call's metadata and its context (which names the caller's
certificate), the error that refuses the call, or None."""


class ModuleServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Counts and times every call, and refuses calls the gate refuses."""

    def __init__(self, recorder: ModuleMetricsRecorder, gate: Gate) -> None:
        self._recorder = recorder
        self._gate = gate

    # grpc.aio lets an interceptor answer None for a method no servicer has; grpc-stubs does not.
    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        # Binary (-bin) metadata is bytes; the gate reads text keys only.
        metadata = {
            key: value for key, value in handler_call_details.invocation_metadata or () if isinstance(value, str)
        }
        return guarded_handler(
            handler,
            lambda context: self._gate(method, metadata, context),
            observe=_call_metrics(method, self._recorder),
        )


def _call_metrics(method: str, recorder: ModuleMetricsRecorder) -> Observer:
    """An observer that times each call of `method` and records it with its status code."""

    def observe(context: grpc.aio.ServicerContext[Any, Any]) -> Callable[[bool], None]:
        started = time.perf_counter()

        def finish(failed: bool) -> None:
            code = context.code()
            ok = not failed and code in (None, grpc.StatusCode.OK, 0)
            if isinstance(code, grpc.StatusCode):
                name = code.name
            else:
                name = "OK" if ok else "UNKNOWN"
            recorder.record_call(method, (time.perf_counter() - started) * 1000.0, ok, name)

        return finish

    return observe
