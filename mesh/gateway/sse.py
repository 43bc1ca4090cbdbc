"""A server-streaming method over HTTP as Server-Sent Events (the `text/event-stream` a
browser's EventSource or fetch, or `curl -N`, reads): each response one event.

    id: 1
    data: {"notification": {...}}         a response, in protobuf's canonical JSON mapping

    event: error
    data: {"error": {...}}                the call failed once streaming (the status was 200 already)

    event: end
    data: {"reason": "..."}               the stream is over: the module ended it, or the gateway stops

Until the module accepts the call, a refusal is an ordinary HTTP error answer (401, 403, 404,
429 …), as for a unary call: the stream begins (200) once the module sent its response headers,
which an SDK module does as soon as the call passed its checks. A comment line every
HEARTBEAT_SECONDS keeps proxies and load balancers from closing a quiet stream. A caller who
goes away cancels the call to the module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from mesh.gateway.edges import json_response
from mesh.gateway.transcoding import call_failed, json_text, response_json

HEARTBEAT_SECONDS = 15.0
"""How long a stream may be quiet before the gateway sends a comment line to keep it open."""
STREAM_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no"}
"""X-Accel-Buffering: a reverse proxy in front (Nginx) passes each event on at once."""
FIRST = asyncio.FIRST_COMPLETED
ENDED_BY_MODULE = "the module ended the stream"
ENDED_BY_GATEWAY = "the gateway is stopping; watch again (another replica, or this one once restarted)"


async def stream_events(
    request: web.Request,
    call: grpc.aio.UnaryStreamCall[Any, Any],
    module: str,
    closing: asyncio.Event,
    render: Callable[[Message], Any] = response_json,
) -> web.StreamResponse:
    """Answer `request` with the responses of `call`, as they come (`render` makes each one's
    JSON), until the call or the gateway (`closing`) ends.

    Returns:
        The HTTP error of a call refused before it streamed, else the finished stream.
    """
    try:
        await call.initial_metadata()  # the module accepted the call, or it is over
        if call.done():
            await call.read()  # raises the call's error; an empty stream reads its end
    except grpc.aio.AioRpcError as error:
        status, body = call_failed(error, module)
        return json_response(body, status)
    response = web.StreamResponse(headers=STREAM_HEADERS)
    await response.prepare(request)
    reason = await _relay(call, response, module, closing, render)
    await response.write(_event("end", {"reason": reason}))
    await response.write_eof()
    return response


async def _relay(
    call: grpc.aio.UnaryStreamCall[Any, Any],
    response: web.StreamResponse,
    module: str,
    closing: asyncio.Event,
    render: Callable[[Message], Any],
) -> str:
    """Write each response of `call` as an event; returns why the stream ended."""
    closed = asyncio.ensure_future(closing.wait())
    reading: asyncio.Future[Any] | None = None
    sent = 0
    try:
        while True:
            reading = asyncio.ensure_future(call.read())
            while not reading.done():
                done, _ = await asyncio.wait((reading, closed), timeout=HEARTBEAT_SECONDS, return_when=FIRST)
                if closed in done:
                    return ENDED_BY_GATEWAY
                if not done:
                    await response.write(b": still here\n\n")
            try:
                message = reading.result()
            except grpc.aio.AioRpcError as error:
                _status, body = call_failed(error, module)
                await response.write(_event("error", body))
                return f"{module}: {error.code().name}"
            if message is grpc.aio.EOF:  # type: ignore[attr-defined]  # grpc-stubs lacks aio.EOF
                return ENDED_BY_MODULE
            sent += 1
            await response.write(f"id: {sent}\ndata: {json_text(render(message))}\n\n".encode())
    finally:
        closed.cancel()
        if reading is not None:
            reading.cancel()
        if not call.done():  # the caller went away (the handler is cancelled) or writing failed
            call.cancel()


def _event(kind: str, body: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json_text(body)}\n\n".encode()
