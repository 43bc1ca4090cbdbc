"""What every answer of the gateway goes through (aiohttp middlewares): its errors as JSON,
aiohttp's own included; the security headers; the request id; CORS; the request's span, its
metrics and its log line."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from mesh.gateway.limits import Verdict
from mesh.gateway.metrics import UNKNOWN, GatewayMetrics
from mesh.gateway.settings import GatewaySettings
from mesh.gateway.transcoding import BadRequest, error_body, json_text, quoted
from mesh.protocol.active_span import active
from mesh.protocol.telemetry import tracing

_log = logging.getLogger("mesh.gateway")
_tracer = trace.get_tracer("mesh.gateway")

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID_CHARS = 128
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Server": "mesh-gateway",
}
"""On every answer: the gateway serves JSON only, which no page should frame, sniff or cache;
and it names no library version to a scanner."""
ROUTES = (
    "the gateway serves POST /api/v1/<module>/<Method> (and the modules' REST routes under /api/v1/<module>), "
    "GET /healthz, GET /readyz, GET /metrics and GET /openapi.json"
)
API_PREFIX = "/api/"
API_ROUTE = "/api/v1/{module}{tail:(/.*)?}"
"""Every request to a module (aiohttp's pattern); mesh.gateway.dispatch decides which method."""
GENERIC_ROUTE = "/api/v1/<module>/<Method>"
SPAN_ROUTE = "/api/v1/{module}/{method}"
"""The route of a span (`http.route`): the generic one, or a REST route's template."""
ROUTED = "mesh.routed"
"""The (module, method) a request was routed to, as far as it got: the labels of its metrics."""
ROUTE_TEMPLATE = "mesh.route"
"""The route a request took ("/api/v1/orders/{id}"), for its span."""
LIMITED = "mesh.rate-limit"
"""The rate limit's verdict on a request, for the headers of its answer."""
CORS_ORIGIN = "mesh.cors-origin"
"""The allowed origin a request came from, for the headers of its answer."""
CLIENT_CLOSED = 499
"""The status a request is counted and logged with when its caller went away first."""
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
"""POST for every method; the others for the REST routes of google.api.http annotations."""
CORS_HEADERS = "authorization, content-type, x-request-id, x-tenant-id"
CORS_MAX_AGE_SECONDS = 600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def failure(status: int, code: str, message: str, reason: str = "", **more: Any) -> web.Response:
    """An error answer: the status, and the JSON body every error of the gateway has."""
    return json_response(error_body(status, code, message, reason, **more), status)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json_text(body), status=status, content_type="application/json")


def answers_json(settings: GatewaySettings, metrics: GatewayMetrics) -> Any:
    """Every answer carries the security headers and the request id; every error is JSON
    (aiohttp's own — no route, wrong method, body too large — included); one log line a call,
    and each API call counted and timed (under the module and method it was routed to)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request[REQUEST_ID_HEADER] = given[:MAX_REQUEST_ID_CHARS] if is_metadata_text(given) else secrets.token_hex(8)
        began = time.perf_counter()
        traced = tracing() and request.path.startswith(API_PREFIX)
        span = _request_span(request) if traced else None
        scope = active(span, fail_on_exception=False) if span is not None else contextlib.nullcontext()
        status = CLIENT_CLOSED  # unless an answer is made: the caller went away (the handler is cancelled)
        try:
            with scope:
                response = await _answer(request, handler, settings)
                status = response.status
                if span is not None:
                    _close_span(span, request, response)
        finally:
            elapsed = time.perf_counter() - began
            if request.path.startswith(API_PREFIX):
                module, method = request.get(ROUTED, (UNKNOWN, UNKNOWN))
                metrics.record(module, method, status, elapsed)
            _log.info(
                "%s %s -> %d in %.1f ms [%s]",
                request.method,
                request.path,
                status,
                elapsed * 1000,
                request[REQUEST_ID_HEADER],
            )
        return response

    return middleware


async def stamp_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The headers every answer carries, set as it is sent (aiohttp's on_response_prepare), so
    that a stream, whose headers leave before its handler returns, has them too: the security
    headers, the request id, CORS's allowed origin and the rate limit's verdict."""
    response.headers.update(SECURITY_HEADERS)
    request_id = request.get(REQUEST_ID_HEADER)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    origin = request.get(CORS_ORIGIN)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    verdict: Verdict | None = request.get(LIMITED)
    if verdict is not None:
        response.headers.update(verdict.headers())


async def _answer(request: web.Request, handler: Handler, settings: GatewaySettings) -> web.StreamResponse:
    """The handler's answer; every failure of it, aiohttp's own included, as a JSON error."""
    try:
        return await handler(request)
    except BadRequest as error:
        return failure(400, "INVALID_ARGUMENT", str(error), "BAD_REQUEST_HEADER")
    except web.HTTPException as error:
        message = error.reason
        if error.status in (404, 405):
            message = f"no route {request.method} {quoted(request.path)}; {ROUTES}"
        elif error.status == 413:
            message = f"the body is larger than the {settings.max_body_bytes} bytes a request may have"
        return failure(error.status, _code_of(error.status), message)
    except Exception as error:  # a bug: the caller gets a JSON 500, the log one line (the traceback at DEBUG)
        _log.error("unexpected %s answering %s %s: %s", type(error).__name__, request.method, request.path, error)
        _log.debug("the traceback", exc_info=True)
        return failure(500, "INTERNAL", f"unexpected {type(error).__name__} in the gateway (a bug: please report it)")


def _request_span(request: web.Request) -> Span:
    """The SERVER span of an API request: the root of its trace, or the child of the trace
    context the caller sent (`traceparent`)."""
    return _tracer.start_span(
        f"{request.method} {SPAN_ROUTE}",
        context=propagate.extract(dict(request.headers)),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "url.path": request.path, "http.route": SPAN_ROUTE},
    )


def _close_span(span: Span, request: web.Request, response: web.StreamResponse) -> None:
    span.set_attribute("http.response.status_code", response.status)
    route = request.get(ROUTE_TEMPLATE)
    if route is not None and route != GENERIC_ROUTE:  # a REST route: named by its template
        span.update_name(f"{request.method} {route}")
        span.set_attribute("http.route", route)
    module, method = request.get(ROUTED, (UNKNOWN, UNKNOWN))
    if module != UNKNOWN:
        span.set_attribute("mesh.module", module)
    if method != UNKNOWN:
        span.set_attribute("rpc.method", method)
    if response.status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status}"))


def cross_origin(allowed: frozenset[str]) -> Any:
    """CORS: a preflight from an allowed origin is answered (204), from another refused (403);
    an answer to an allowed origin says so."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin in allowed:
            request[CORS_ORIGIN] = origin  # the answer says so (stamp_headers)
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return await handler(request)
        if origin not in allowed:
            return failure(403, "PERMISSION_DENIED", f"origin {quoted(origin)} may not call this gateway", "CORS")
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
        return response

    return middleware


def is_metadata_text(value: str) -> bool:
    """Whether gRPC can carry `value` as text metadata: printable ASCII, not empty."""
    return bool(value) and value.isascii() and value.isprintable()


def _code_of(status: int) -> str:
    return {404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "RESOURCE_EXHAUSTED"}.get(status, "INVALID_ARGUMENT")
