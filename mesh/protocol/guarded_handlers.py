"""A gRPC method handler with a check run before its behaviour, whatever the call kind.

The coordinator's access interceptor and a module server's interceptor both refuse calls
before any servicer runs (the module's also times and counts every call). A server
interceptor can only do that by handing grpc.aio a new handler whose behaviour wraps the
servicer's, once per call kind; that wrapping is written here once.

The wrapping also ends a call whose behaviour raises a MeshError (a publish that timed out
inside a servicer, say) with that error's status and ErrorInfo reason, as a refusal is
ended, instead of the UNKNOWN grpc gives any exception; a failed gRPC call the behaviour made
(to a dependency) ends it with that call's status. Other exceptions pass on to grpc, which
logs them and answers UNKNOWN.

A streamed call that passed its check has its response headers (empty initial metadata) sent
at once, before the behaviour's first message, which a watch may send much later: a caller
learns that the call was accepted without waiting for it (the gateway answers 200 and begins
Server-Sent Events then, and the HTTP status of a refusal otherwise). A streaming servicer
therefore cannot send initial metadata of its own; trailing metadata it can.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc

from mesh.protocol.errors import MeshError

Context = grpc.aio.ServicerContext[Any, Any]

MAX_PASSED_ON_CHARS = 800
"""How much of a failed inner call's details is passed on (details travel in metadata)."""

Check = Callable[[Context], MeshError | None]
"""The error that refuses a call (it ends the call before the servicer sees it), or None."""

Behaviour = Callable[..., Any]
"""What a method handler runs for a call (grpc-stubs types it as the synchronous server's)."""


class Observer(Protocol):
    """Told of each call's start, before its check, and of its end, with whether it failed (a
    refusal, an error, or a stream closed before its end). An object, not a closure made per
    call: this runs on every call."""

    def start(self) -> float:
        """The call starts; returns what `end` is given back (the start time, say)."""
        ...

    def end(self, context: Context, started: float, failed: bool) -> None:
        """The call ended; `started` is what `start` returned."""
        ...


def guarded_handler(
    handler: grpc.RpcMethodHandler[Any, Any], check: Check, *, observe: Observer | None = None
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with `check` run before its behaviour, of any of the four call kinds.

    Args:
        handler: The servicer's handler, as the interceptor's continuation gave it.
        check: Run first on every call; a refusal aborts the call with that error, as does a
            MeshError the behaviour raises.
        observe: Told of each call's start and end (for metrics); None: nobody is told.

    Returns:
        A handler of the same call kind and serializers.
    """
    observer = observe or _NOBODY

    def unary(inner: Any) -> Behaviour:
        asynchronous = inspect.iscoroutinefunction(inner)

        async def unary_response(request: Any, context: Context) -> Any:
            started = observer.start()
            failed = True
            try:
                refused = check(context)
                if refused is not None:
                    await refused.abort(context)
                try:
                    if asynchronous:  # told apart once, not on every call: this runs on every call
                        result = await inner(request, context)
                    else:
                        result = inner(request, context)
                        if inspect.isawaitable(result):
                            result = await result
                except MeshError as error:
                    await error.abort(context)
                except grpc.aio.AioRpcError as error:
                    await _pass_on(error, context)
                failed = False
                return result
            finally:
                observer.end(context, started, failed)

        return unary_response

    def stream(inner: Any) -> Behaviour:
        async def stream_response(request: Any, context: Context) -> AsyncIterator[Any]:
            started = observer.start()
            failed = True
            try:
                await _enforce(check, context)
                await context.send_initial_metadata(())
                try:
                    result = inner(request, context)
                    if inspect.isasyncgen(result):
                        async for response in result:
                            yield response
                    elif inspect.isawaitable(result):  # a behaviour that writes with context.write
                        await result
                    else:
                        for response in result:
                            yield response
                except MeshError as error:
                    await error.abort(context)
                except grpc.aio.AioRpcError as error:
                    await _pass_on(error, context)
                failed = False
            finally:
                observer.end(context, started, failed)

        return stream_response

    return rewrapped(handler, unary, stream)


def rewrapped(
    handler: grpc.RpcMethodHandler[Any, Any],
    unary: Callable[[Any], Behaviour],
    stream: Callable[[Any], Behaviour],
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of `handler`'s call kind and serializers whose behaviour is made from its
    own: by `unary(behaviour)` when one response answers the call, by `stream(behaviour)`
    when the responses are streamed.

    grpc.aio decides how to run a behaviour by its kind, so what `unary` and `stream` return
    must be a real `async def` (a coroutine function and an async generator function), not a
    lambda; grpc-stubs types behaviours as the synchronous server's, hence `Any`.
    """
    options: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **options)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **options)
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **options)


async def _pass_on(error: grpc.aio.AioRpcError, context: Context) -> None:
    """End the call with the status of a call it made that failed (a dependency UNAVAILABLE
    stays UNAVAILABLE, so the caller can tell it may retry) instead of UNKNOWN."""
    details = error.details() or error.code().name
    await context.abort(error.code(), f"a call this one depends on failed: {details}"[:MAX_PASSED_ON_CHARS])


async def _enforce(check: Check, context: Context) -> None:
    refused = check(context)
    if refused is not None:
        await refused.abort(context)


class _Nobody:
    """The observer when nobody watches the calls: told nothing, it costs one call each way."""

    def start(self) -> float:
        return 0.0

    def end(self, context: Context, started: float, failed: bool) -> None:
        pass


_NOBODY = _Nobody()
