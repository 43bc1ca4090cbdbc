"""A server-streaming call relayed as Server-Sent Events (mesh.gateway.sse), between a real
grpc.aio server and a real HTTP client: the events in order and the stream's end; a refusal
before the stream as an HTTP status; a failure during it as an error event; the gateway's stop
ending a stream; and a caller who goes away cancelling the call to the module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from google.protobuf import struct_pb2

from httpkit import ServerEvent, server_events
from mesh.gateway.sse import ENDED_BY_GATEWAY, ENDED_BY_MODULE, stream_events
from mesh.protocol.errors import MeshError

Behaviour = Callable[[struct_pb2.Struct, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[struct_pb2.Struct]]
WAIT_SECONDS = 30.0


class _Streams(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, behaviours: dict[str, Behaviour]) -> None:
        self.behaviours = behaviours

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        behaviour = self.behaviours.get(details.method.rsplit("/", 1)[1])
        if behaviour is None:
            return None
        return grpc.unary_stream_rpc_method_handler(
            behaviour, request_deserializer=struct_pb2.Struct.FromString, response_serializer=_serialize
        )


def _serialize(message: struct_pb2.Struct) -> bytes:
    return message.SerializeToString()


def _counted(n: int) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update({"n": n})
    return message


async def _events(response: aiohttp.ClientResponse) -> list[ServerEvent]:
    return [event async for event in server_events(response)]


@pytest.fixture
async def relay() -> AsyncIterator[tuple[str, dict[str, Behaviour], asyncio.Event]]:
    """A gRPC server of the test's behaviours, and an HTTP server relaying `GET /<method>` as
    Server-Sent Events; the event ends the streams as the gateway's stop does."""
    behaviours: dict[str, Behaviour] = {}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_Streams(behaviours)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    closing = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        call = channel.unary_stream(
            f"/test.Streams/{request.match_info['method']}",
            request_serializer=_serialize,
            response_deserializer=struct_pb2.Struct.FromString,
        )(struct_pb2.Struct())
        return await stream_events(request, call, "streams", closing)

    app = web.Application()
    app.router.add_get("/{method}", handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{http_port}", behaviours, closing
    finally:
        await runner.cleanup()
        await channel.close()
        await server.stop(None)


async def _get(url: str, read: Callable[[aiohttp.ClientResponse], Awaitable[Any]]) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_SECONDS)) as session:
        async with session.get(url) as response:
            return response, await read(response)


async def test_each_response_is_an_event_and_the_end_is_said(relay: Any) -> None:
    url, behaviours, _closing = relay

    async def three(_request: Any, _context: Any) -> AsyncIterator[struct_pb2.Struct]:
        for n in range(3):
            yield _counted(n)

    behaviours["Three"] = three
    response, events = await _get(url + "/Three", _events)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    assert events == [
        ServerEvent("message", {"n": 0.0}, "1"),
        ServerEvent("message", {"n": 1.0}, "2"),
        ServerEvent("message", {"n": 2.0}, "3"),
        ServerEvent("end", {"reason": ENDED_BY_MODULE}),
    ]


async def test_a_refusal_before_the_stream_is_an_http_error_with_the_reason(relay: Any) -> None:
    url, behaviours, _closing = relay

    async def refused(_request: Any, context: Any) -> AsyncIterator[struct_pb2.Struct]:
        await MeshError("MODULE_DISABLED_FOR_TENANT", "tenant globex may not use streams").abort(context)
        yield _counted(0)

    behaviours["Refused"] = refused
    response, body = await _get(url + "/Refused", lambda response: response.json())
    assert response.status == 403
    assert body["error"]["reason"] == "MODULE_DISABLED_FOR_TENANT" and "globex" in body["error"]["message"]


async def test_a_failure_during_the_stream_is_an_error_event(relay: Any) -> None:
    url, behaviours, _closing = relay

    async def breaks(_request: Any, context: Any) -> AsyncIterator[struct_pb2.Struct]:
        yield _counted(0)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the store went away")

    behaviours["Breaks"] = breaks
    response, events = await _get(url + "/Breaks", _events)
    assert response.status == 200
    assert events[0] == ServerEvent("message", {"n": 0.0}, "1")
    assert events[1].kind == "error" and events[1].data["error"]["code"] == "UNAVAILABLE"
    assert "the store went away" in events[1].data["error"]["message"]
    assert events[2] == ServerEvent("end", {"reason": "streams: UNAVAILABLE"})


async def test_the_gateway_stopping_ends_a_quiet_stream_and_says_so(relay: Any) -> None:
    url, behaviours, closing = relay
    cancelled = asyncio.Event()

    async def forever(_request: Any, context: Any) -> AsyncIterator[struct_pb2.Struct]:
        await context.send_initial_metadata(())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield _counted(0)

    behaviours["Forever"] = forever

    async def read_after_closing(response: aiohttp.ClientResponse) -> list[ServerEvent]:
        closing.set()  # the stream began (its status arrived): the gateway stops
        return await _events(response)

    response, events = await _get(url + "/Forever", read_after_closing)
    assert response.status == 200
    assert events == [ServerEvent("end", {"reason": ENDED_BY_GATEWAY})]
    await asyncio.wait_for(cancelled.wait(), WAIT_SECONDS)  # and the module's call was cancelled


async def test_a_caller_going_away_cancels_the_call_to_the_module(relay: Any) -> None:
    url, behaviours, _closing = relay
    began, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(_request: Any, _context: Any) -> AsyncIterator[struct_pb2.Struct]:
        yield _counted(0)
        began.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    behaviours["Forever"] = forever

    async def first_line(response: aiohttp.ClientResponse) -> bytes:
        return await response.content.readline()

    response, line = await _get(url + "/Forever", first_line)  # the session closes: the caller goes
    assert response.status == 200 and line == b"id: 1\n"
    await asyncio.wait_for(began.wait(), WAIT_SECONDS)
    await asyncio.wait_for(cancelled.wait(), WAIT_SECONDS)
