"""The module server's interceptor: request metrics for every call, and a gate that may
refuse it (who is calling; the module's own services closed until RUNNING; the tenant guard).

Written by hand because it must see every call kind (unary and streaming) with the
module's state at hand, and cost no more than a clock read and a dict update per call.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc

from mesh.protocol.errors import MeshError
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
        return _wrap(handler, method, self._recorder, lambda context: self._gate(method, metadata, context))


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    recorder: ModuleMetricsRecorder,
    gate: Callable[[grpc.aio.ServicerContext[Any, Any]], MeshError | None],
) -> grpc.RpcMethodHandler[Any, Any]:
    def finish(started: float, context: grpc.aio.ServicerContext[Any, Any], failed: bool) -> None:
        code = context.code()
        ok = not failed and code in (None, grpc.StatusCode.OK, 0)
        if isinstance(code, grpc.StatusCode):
            name = code.name
        else:
            name = "OK" if ok else "UNKNOWN"
        recorder.record_call(method, (time.perf_counter() - started) * 1000.0, ok, name)

    async def unary_response(request_or_iterator: Any, context: grpc.aio.ServicerContext[Any, Any], inner: Any) -> Any:
        started = time.perf_counter()
        failed = True
        try:
            refusal = gate(context)
            if refusal is not None:
                await refusal.abort(context)
            result = inner(request_or_iterator, context)
            if inspect.isawaitable(result):
                result = await result
            failed = False
            return result
        finally:
            finish(started, context, failed)

    async def stream_response(
        request_or_iterator: Any, context: grpc.aio.ServicerContext[Any, Any], inner: Any
    ) -> AsyncIterator[Any]:
        started = time.perf_counter()
        failed = True
        try:
            refusal = gate(context)
            if refusal is not None:
                await refusal.abort(context)
            result = inner(request_or_iterator, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            elif inspect.isawaitable(result):
                await result
            else:
                for response in result:
                    yield response
            failed = False
        finally:
            finish(started, context, failed)

    # grpc.aio decides how to run a behaviour by its kind (coroutine function or async
    # generator function), so each wrapper is a real `async def`, not a lambda.
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary
        make = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await unary_response(request, context, inner)

        return make(unary, **options)

    inner_stream = handler.unary_stream or handler.stream_stream
    make_stream = (
        grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
    )

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async for response in stream_response(request, context, inner_stream):
            yield response

    return make_stream(streaming, **options)
