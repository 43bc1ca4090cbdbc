"""Every call of a module server through one gate (who is calling; the module's own services
closed until RUNNING; the tenant guard), and timed and counted; the calls of the module's own
services are also counted while they run (`InFlightCalls`), so that a Stop or Reload can drain
them before it closes what they use.

The servicers register through a `GatedServer`, which wraps each method handler once, as it
is registered (`mesh.protocol.guarded_handlers`), instead of a grpc.aio interceptor, which
costs a coroutine, a handler lookup and a newly wrapped handler on every call: removing it
took about 30 µs of server CPU off each call of 280 (bench/rpc.py, mTLS and tokens on). Both registration paths of
grpc.aio are covered (generic handlers, and registered methods), so no handler reaches the
server unwrapped.

Registered methods are not passed on as such: the gated handlers go into one dictionary,
looked up by one generic handler. grpc.aio's serving loop awaits one pending request per
registered method (plus one for all others) and goes over all of them each time a call
arrives; a module registers a dozen (Lifecycle, health, reflection and its own services)
where a bare server has its own few. Looking them up here took the plaintext SDK module's
server CPU per call against a bare server's from 1.09-1.21 to 1.05-1.18 times (bench/rpc.py).

What the gate and the call metrics do on every call is kept to the least: the metadata is
read as the lookup was given it, what depends only on the method is looked up once. With
mTLS and tokens on, a module whose own handlers are not wrapped at all costs 0.99 times the
bare server's CPU per call; with the gate and metrics, that took the module from 1.16 to 1.07
times (the median of twelve alternating rounds over three fresh sets of processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc

from mesh.protocol.guarded_handlers import Check, Context, guarded_handler
from mesh.protocol.names import TENANT_METADATA
from mesh.protocol.server_spans import traced, traced_handler
from mesh.protocol.tokens import AUTHORIZATION_METADATA
from sdk._metrics import ModuleMetricsRecorder

GateFor = Callable[[str], Check]
"""Given a full method name, the check of its calls: given a call's context (its metadata,
the caller's certificate), the error that refuses it, or None. Asked once per method, as its
handler is wrapped, so that what depends only on the method is not worked out on every call."""
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in grpc-stubs

_arrived_metadata: ContextVar[tuple[Any, ...] | None] = ContextVar("mesh_arrived_metadata", default=None)
"""The metadata of the call the current task serves, as grpc.aio gave it to the handler lookup.

grpc.aio looks a call's handler up and runs it in the one task it makes for the call (its
`_handle_rpc`), each task starting from the serving loop's context, where this is never set:
so what the lookup sets here is seen by that call's handler alone. Reading it again from the
call's context builds the tuple afresh from grpc's C structures, a namedtuple per entry:
about a microsecond and a half in a loop, several times that under load, on every call, for
the x-tenant-id and authorization the gate needs."""


class InFlightCalls:
    """How many calls of the module's own services are running now.

    Lifecycle, health and reflection calls are not counted: a Stop call waits for the others
    to finish, and must not wait for itself or for a health watch that never ends.
    """

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        """The calls running now."""
        return self._count

    def enter(self) -> None:
        self._count += 1
        if self._count == 1:  # not on every call: this runs on every call
            self._idle.clear()

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def wait_idle(self, timeout_seconds: float) -> bool:
        """Wait until no call is running.

        Args:
            timeout_seconds: The longest to wait.

        Returns:
            True when no call was running by then; False when some still were.
        """
        try:
            async with asyncio.timeout(max(timeout_seconds, 0.0)):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class GatedServer:
    """What servicers, health and reflection register with: the server, every handler gated.

    Only the two registration calls are offered, so a registration by any other way fails
    loudly rather than serving without the gate.

    Args:
        server: The grpc.aio server the handlers go to.
        recorder: Where every call is timed and counted.
        gate: The check of each method's calls (asked once per method).
        in_flight: Counts the running calls of the services in `counted_services` (None:
            nothing is counted).
        counted_services: The module's own services (full names).
        trace_calls: Make a SERVER span of every call (but health and reflection ones):
            whether the process traces, known when its server starts.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        recorder: ModuleMetricsRecorder,
        gate: GateFor,
        *,
        in_flight: InFlightCalls | None = None,
        counted_services: frozenset[str] = frozenset(),
        trace_calls: bool = False,
    ) -> None:
        self._server = server
        self._recorder = recorder
        self._gate = gate
        self._in_flight = in_flight
        self._counted_services = counted_services
        self._trace_calls = trace_calls
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}
        self._registered = _RegisteredMethods()
        server.add_generic_rpc_handlers([self._registered])  # first: asked before any other

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self._server.add_generic_rpc_handlers([_GatedGenericHandler(self, inner) for inner in generic_rpc_handlers])

    def add_registered_method_handlers(self, service_name: str, method_handlers: Mapping[str, Handler]) -> None:
        for name, handler in method_handlers.items():
            method = f"/{service_name}/{name}"
            self._registered.handlers[method] = self.gated(method, handler)

    def gated(self, method: str, handler: Handler) -> Handler:
        """`handler` of `method` behind the gate, wrapped once per method and handler."""
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        counted = method.lstrip("/").partition("/")[0] in self._counted_services
        observe = _CallMetrics(method, self._recorder, self._in_flight if counted else None)
        wrapped = guarded_handler(handler, self._gate(method), observe=observe)
        if self._trace_calls and traced(method):
            wrapped = traced_handler(wrapped, method)  # outside the gate: a refused call has its span too
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class _RegisteredMethods(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """The gated handlers of the registered methods, by full method name: one dictionary
    lookup per call (see the module's docstring for why not grpc.aio's registered methods)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        _arrived_metadata.set(handler_call_details.invocation_metadata)
        return self.handlers.get(handler_call_details.method)


class _GatedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """A generic handler whose method handlers come out gated."""

    def __init__(self, server: GatedServer, inner: grpc.GenericRpcHandler[Any, Any]) -> None:
        self._server = server
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        _arrived_metadata.set(handler_call_details.invocation_metadata)
        return self._server.gated(handler_call_details.method, handler)


def tenant_metadata(context: Context) -> tuple[str, str]:
    """The call's x-tenant-id and authorization metadata, "" for either one missing (the last
    one sent, if sent twice). One dict() over the metadata, in C: this runs on every call.

    The metadata is the one the handler lookup was given (`_arrived_metadata`), else (a handler
    run by other means than this server's lookup) the context's."""
    arrived = _arrived_metadata.get()
    # Neither key ends in -bin, so grpc hands both over as text (it decodes the value of every
    # key that does not end in -bin to a str): no check of their type on every call.
    metadata: dict[str, str] = dict(arrived if arrived is not None else context.invocation_metadata() or ())
    return metadata.get(TENANT_METADATA, ""), metadata.get(AUTHORIZATION_METADATA, "")


class _CallMetrics:
    """Times each call of one method and records it with its status code; with `in_flight`,
    also counts it there from its start to its end (a refused call too, for the moment it
    takes to refuse it)."""

    __slots__ = ("_calls", "_in_flight")

    def __init__(self, method: str, recorder: ModuleMetricsRecorder, in_flight: InFlightCalls | None) -> None:
        self._calls = recorder.calls_of(method)
        self._in_flight = in_flight

    def start(self) -> float:
        if self._in_flight is not None:
            self._in_flight.enter()
        return time.perf_counter()

    def end(self, context: Context, started: float, failed: bool) -> None:
        if self._in_flight is not None:
            self._in_flight.leave()
        milliseconds = (time.perf_counter() - started) * 1000.0
        code = context.code()
        if code is None and not failed:  # the servicer returned without setting a code: most calls
            self._calls.record(milliseconds, True)
            return
        ok = not failed and code in (grpc.StatusCode.OK, 0)
        if isinstance(code, grpc.StatusCode):
            name = code.name
        else:
            name = "OK" if ok else "UNKNOWN"
        self._calls.record(milliseconds, ok, name)
