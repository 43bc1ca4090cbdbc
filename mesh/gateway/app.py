"""The gateway's HTTP application (aiohttp): its routes, `POST /api/v1/<module>/<Method>`,
`GET /healthz`, `GET /readyz`, `GET /openapi.json`, `GET /metrics`; what every answer goes
through (JSON errors, headers, CORS, spans) is in `mesh.gateway.edges`.

A call is authenticated here, once: the bearer token must verify with the mesh's keys (401
otherwise), and is forwarded to the module, which decides what the token's tenant may do
(403 MODULE_DISABLED_FOR_TENANT, say). With `--insecure` (a plaintext mesh) nothing is
verified and `x-tenant-id` is forwarded as sent, as the modules of such a mesh take it. Each
tenant's calls of each route are rate limited (`mesh.gateway.limits`), with the other replicas'
calls deducted (`mesh.gateway.limit_sharing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import TypeVar

import grpc
from aiohttp import web
from google.protobuf.message import Message
from opentelemetry import propagate

from mesh.gateway.directory import ModuleDirectory, Placement
from mesh.gateway.dispatch import Target, choose, near
from mesh.gateway.edges import (
    API_ROUTE,
    LIMITED,
    REQUEST_ID_HEADER,
    ROUTE_TEMPLATE,
    ROUTED,
    answers_json,
    cross_origin,
    failure,
    is_metadata_text,
    json_response,
    stamp_headers,
)
from mesh.gateway.limits import RateLimiter
from mesh.gateway.metrics import UNKNOWN, GatewayMetrics
from mesh.gateway.openapi import openapi_document
from mesh.gateway.routes import ModuleRoutes, ReflectionFailed
from mesh.gateway.settings import GatewaySettings
from mesh.gateway.sse import stream_events
from mesh.gateway.transcoding import BadRequest, call_failed, quoted
from mesh.protocol.errors import MeshError
from mesh.protocol.names import TENANT_METADATA
from mesh.protocol.reflection import ReflectedMethod
from mesh.protocol.states import State
from mesh.protocol.telemetry import tracing
from mesh.protocol.tokens import AUTHORIZATION_METADATA, HOW_TO_GET, bearer_token
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, health_pb2

_log = logging.getLogger("mesh.gateway")

COORDINATOR_TIMEOUT_SECONDS = 5.0
T = TypeVar("T")


def build_app(
    directory: ModuleDirectory,
    settings: GatewaySettings,
    limiter: RateLimiter | None = None,
    metrics: GatewayMetrics | None = None,
) -> web.Application:
    """The gateway's HTTP application over `directory`'s modules.

    Args:
        limiter: Its rate limits (shared with other replicas: mesh.gateway.limit_sharing);
            by default its own, of `settings`.
        metrics: Where it counts (by default metrics of its own).
    """
    metrics = metrics or GatewayMetrics()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[answers_json(settings, metrics), cross_origin(settings.allowed_origins)],
    )
    handlers = _Handlers(directory, settings, metrics, limiter or RateLimiter(settings.rate_limits))
    app.on_response_prepare.append(stamp_headers)
    app.on_shutdown.append(handlers.closing)
    app.router.add_route("*", API_ROUTE, handlers.call)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/openapi.json", handlers.openapi)
    return app


class _Handlers:
    def __init__(
        self, directory: ModuleDirectory, settings: GatewaySettings, metrics: GatewayMetrics, limiter: RateLimiter
    ) -> None:
        self._directory = directory
        self._settings = settings
        self._metrics = metrics
        self._limiter = limiter
        self._closing = asyncio.Event()

    async def closing(self, _app: web.Application) -> None:
        """The gateway stops (aiohttp's on_shutdown): the streams end, and say why."""
        self._closing.set()

    async def call(self, request: web.Request) -> web.StreamResponse:
        """A request under /api/v1/<module>: one call of the module's method the route names
        (mesh.gateway.dispatch), JSON in; JSON out, or Server-Sent Events for a server-streaming
        method (mesh.gateway.sse). Every answer says how much of the rate limit is left."""
        module, tail = request.match_info["module"], request.match_info["tail"]
        placement = self._directory.placement(module)
        if placement is not None:
            request[ROUTED] = (module, UNKNOWN)
        if placement is None and not self._directory.heard:
            return failure(
                503,
                "UNAVAILABLE",
                f"the gateway has not yet heard from the coordinator at {self._directory.coordinator} which modules "
                "run; retry in a moment",
                "MODULE_UNAVAILABLE",
            )
        if placement is None:
            return failure(
                404, "NOT_FOUND", f"no module {quoted(module)} in this mesh{near(module, self._directory.names())}"
            )
        if not placement.serving or not placement.address:
            return failure(
                503,
                "UNAVAILABLE",
                f"module {module} is {State(placement.state).name}; it is routed again once it is RUNNING",
                "MODULE_UNAVAILABLE",
            )
        try:
            routes = await self._directory.routes(module, placement)
        except ReflectionFailed as error:
            return failure(502, "UNAVAILABLE", str(error), "MODULE_UNAVAILABLE")
        except TimeoutError:
            return failure(504, "DEADLINE_EXCEEDED", f"module {module}'s server reflection did not answer in time")
        target = choose(request, module, tail, routes)
        if isinstance(target, web.Response):
            return target
        return await self._call(request, module, placement, target)

    async def _call(
        self, request: web.Request, module: str, placement: Placement, target: Target
    ) -> web.StreamResponse:
        route = target.method
        request[ROUTED] = (module, route.method.full_name)
        request[ROUTE_TEMPLATE] = target.route
        if route.method.client_streaming:
            return failure(
                501,
                "UNIMPLEMENTED",
                f"{route.path} takes a stream of requests, which HTTP/JSON cannot send; the gateway routes unary "
                "methods, and server-streaming ones as Server-Sent Events",
                "STREAMING",
            )
        tenant, refused = self._authenticate(request, public=placement.is_public(route))
        if refused is not None:
            return refused
        verdict = request[LIMITED] = self._limiter.take(tenant, module, f"{module}{route.path}")
        if verdict is not None and not verdict.allowed:
            self._metrics.rate_limited(module, route.method.full_name)
            return failure(
                429,
                "RESOURCE_EXHAUSTED",
                f"tenant {quoted(tenant)} made more than {verdict.rate:g} calls a second of "
                f"{module}/{route.method.name}; retry in {verdict.reset_seconds} s",
                "RATE_LIMITED",
            )
        try:
            message = target.request(await request.read(), request.rel_url.query)
        except BadRequest as error:
            return failure(400, "INVALID_ARGUMENT", str(error), "BAD_REQUEST_BODY")
        channel = self._directory.channel(placement.address)
        if route.method.server_streaming:
            # No deadline: a watch runs until the caller goes, the module ends it, or the gateway stops.
            stream = channel.unary_stream(route.path, _serializer, route.response_class.FromString)
            watching = stream(message, metadata=self._forwarded(request))
            return await stream_events(request, watching, module, self._closing, target.answer)
        call = channel.unary_unary(route.path, _serializer, route.response_class.FromString)
        try:
            answer = await call(message, metadata=self._forwarded(request), timeout=self._settings.call_timeout_seconds)
        except grpc.aio.AioRpcError as error:
            status, body = call_failed(error, module)
            return json_response(body, status)
        return json_response(target.answer(answer))

    async def openapi(self, _request: web.Request) -> web.Response:
        """GET /openapi.json: the OpenAPI 3.1 document of every unary method of every module
        running now (a module whose reflection cannot be read is left out, and named)."""
        running = [
            (name, placement)
            for name in self._directory.names()
            if (placement := self._directory.placement(name)) is not None and placement.serving and placement.address
        ]
        read = await asyncio.gather(
            *(self._directory.routes(name, placement) for name, placement in running), return_exceptions=True
        )
        routes = [found for found in read if isinstance(found, ModuleRoutes)]
        document = openapi_document(routes, metadata.version("module-mesh"), self._is_public)
        left_out = {
            name: str(found) or type(found).__name__
            for (name, _placement), found in zip(running, read, strict=True)
            if not isinstance(found, ModuleRoutes)
        }
        if left_out:
            document["info"]["x-left-out"] = left_out
        return json_response(document)

    def _is_public(self, module: str, route: ReflectedMethod) -> bool:
        placement = self._directory.placement(module)
        return placement is not None and placement.is_public(route)

    async def metrics(self, _request: web.Request) -> web.Response:
        """GET /metrics: the gateway's metrics and the mesh's in the Prometheus text format; the
        gateway's alone when the coordinator does not answer in time (logged)."""
        mesh, problem = await self._ask_coordinator(
            lambda coordinator: coordinator.GetSystemMetrics(coordinator_pb2.GetSystemMetricsRequest())
        )
        if mesh is None:
            _log.warning("/metrics without the mesh's: %s", problem)
        body = self._metrics.exposition(mesh)
        return web.Response(body=body, headers={"Content-Type": self._metrics.content_type})

    async def healthz(self, _request: web.Request) -> web.Response:
        """GET /healthz: the gateway itself answers (a load balancer's liveness probe)."""
        return json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """GET /readyz: the mesh's health as the coordinator aggregates it; 503 unless healthy
        or degraded (a critical module down makes the mesh unhealthy), or when the coordinator
        does not answer."""
        health, problem = await self._ask_coordinator(
            lambda coordinator: coordinator.GetSystemHealth(coordinator_pb2.GetSystemHealthRequest())
        )
        if health is None:
            return failure(503, "UNAVAILABLE", problem)
        ready = health.status in (health_pb2.HEALTH_STATUS_HEALTHY, health_pb2.HEALTH_STATUS_DEGRADED)
        body = {
            "status": health_pb2.HealthStatus.Name(health.status).removeprefix("HEALTH_STATUS_").lower(),
            "modules": {
                module.name: health_pb2.HealthStatus.Name(module.status).removeprefix("HEALTH_STATUS_").lower()
                for module in health.modules
            },
        }
        return json_response(body, 200 if ready else 503)

    async def _ask_coordinator(
        self, ask: Callable[[coordinator_pb2_grpc.CoordinatorStub], Awaitable[T]]
    ) -> tuple[T | None, str]:
        """The coordinator's answer to `ask`, within COORDINATOR_TIMEOUT_SECONDS; else None, and why."""
        try:
            async with asyncio.timeout(COORDINATOR_TIMEOUT_SECONDS):
                channel = self._directory.channel(self._directory.coordinator)
                return await ask(coordinator_pb2_grpc.CoordinatorStub(channel)), ""
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            detail = error.details() if isinstance(error, grpc.aio.AioRpcError) else "no answer in time"
            return None, f"the coordinator at {self._directory.coordinator}: {detail}"

    def _authenticate(self, request: web.Request, *, public: bool) -> tuple[str, web.Response | None]:
        """The caller's tenant, and None when the call may go on: its bearer token verifies (or
        the mesh is plaintext, where the tenant is x-tenant-id as sent; or the method is public
        and no token is sent, where the tenant is ""); else the refusal."""
        tokens = self._settings.tokens
        if tokens is None:
            return request.headers.get(TENANT_METADATA, ""), None
        authorization = request.headers.get("Authorization", "")
        if not authorization and public:
            return "", None
        if not authorization:
            return "", failure(
                401,
                "UNAUTHENTICATED",
                f"no bearer token: send `Authorization: Bearer <token>`; {HOW_TO_GET}",
                "UNAUTHENTICATED",
            )
        try:
            claims = tokens.verify(bearer_token(authorization))
        except MeshError as error:
            return "", failure(401, "UNAUTHENTICATED", error.message, error.reason, metadata=dict(error.metadata))
        return claims.tenant, None

    def _forwarded(self, request: web.Request) -> Sequence[tuple[str, str]]:
        """The metadata the module gets: the caller's token, the request id, and (plaintext
        mesh only) the tenant the caller names."""
        metadata = [("x-request-id", request[REQUEST_ID_HEADER])]
        if tracing():  # the module's span is the child of the gateway's
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            metadata.extend(carrier.items())
        forwarded = [("Authorization", AUTHORIZATION_METADATA)]
        if self._settings.tokens is None:
            forwarded.append((TENANT_METADATA, TENANT_METADATA))
        for header, key in forwarded:
            value = request.headers.get(header, "")
            if not value:
                continue
            if not is_metadata_text(value):
                raise BadRequest(f"the {header} header holds characters gRPC metadata cannot carry: {quoted(value)}")
            metadata.append((key, value))
        return metadata


def _serializer(message: Message) -> bytes:
    return message.SerializeToString()
