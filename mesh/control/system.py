"""The mesh seen whole: system health (checked concurrently, with timeouts, cached a few
seconds) of the modules and of NATS, system metrics (the shape of a module system's
`/system/metrics`) and the graph."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import duration_pb2

from mesh.control import graph
from mesh.control.module_client import ModuleClient
from mesh.control.nats_supervisor import NatsSupervisor
from mesh.control.registry import ModuleRecord, Registry, now
from mesh.protocol.errors import MeshError
from mesh.protocol.names import EVENT_COUNT_FIELDS, EVENT_STREAM
from mesh.protocol.states import State
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2, health_pb2, metrics_pb2

HEALTHY = health_pb2.HEALTH_STATUS_HEALTHY
DEGRADED = health_pb2.HEALTH_STATUS_DEGRADED
UNHEALTHY = health_pb2.HEALTH_STATUS_UNHEALTHY

_REACHABLE_STATES = (State.INITIALIZED, State.STARTING, State.RUNNING, State.INITIALIZING, State.REGISTERED)

JETSTREAM_DEADLINE_SECONDS = 2.0
"""How long the JetStream check may take: a local server answers in milliseconds, and a
JetStream that takes longer cannot keep up with the mesh's publishes either."""

InfrastructureCheck = Callable[[], Awaitable[list[health_pb2.ComponentHealth]]]
"""Checks what the whole mesh stands on (NATS); see `NatsHealth`."""


class NatsHealth:
    """The mesh's NATS as the coordinator sees it: its own connection, and JetStream answering
    for the event stream within a deadline.

    Args:
        connection: The coordinator's nats-py client (it reconnects by itself).
        supervisor: The embedded server's supervisor, for why it is down and how often it was
            restarted; None with an external NATS.
        deadline_seconds: How long the JetStream call may take.
    """

    def __init__(
        self,
        connection: Any,
        supervisor: NatsSupervisor | None,
        *,
        deadline_seconds: float = JETSTREAM_DEADLINE_SECONDS,
    ) -> None:
        self._nats = connection
        self._supervisor = supervisor
        self._deadline = deadline_seconds

    async def __call__(self) -> list[health_pb2.ComponentHealth]:
        """The "nats" and "jetstream" components, checked now."""
        if not self._nats.is_connected:
            why = self._why_down()
            return [
                _component("nats", UNHEALTHY, f"the coordinator is not connected to NATS: {why}"),
                _component("jetstream", UNHEALTHY, "not checked: NATS is not connected"),
            ]
        restarts = self._supervisor.restarts if self._supervisor else 0
        note = f"the embedded nats-server was restarted {restarts} time(s)" if restarts else ""
        nats_component = _component("nats", HEALTHY, note)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._deadline):
                await self._nats.jetstream().stream_info(EVENT_STREAM)
        except TimeoutError:
            jetstream = _component(
                "jetstream", UNHEALTHY, f"the event stream {EVENT_STREAM} did not answer within {self._deadline} s"
            )
        except Exception as error:  # any failure of the call is the verdict, not a crash
            jetstream = _component("jetstream", UNHEALTHY, f"the event stream {EVENT_STREAM}: {error or type(error)}")
        else:
            jetstream = _component("jetstream", HEALTHY)
        jetstream.latency.FromNanoseconds(int((time.monotonic() - started) * 1e9))
        return [nats_component, jetstream]

    def _why_down(self) -> str:
        if self._nats.is_closed:
            return "the connection is closed"
        supervisor = self._supervisor
        if supervisor is not None and supervisor.down_since is not None:
            down_for = time.monotonic() - supervisor.down_since
            return f"the embedded nats-server {supervisor.last_exit} {down_for:.0f} s ago and is being restarted"
        return "reconnecting"


def _component(name: str, status: health_pb2.HealthStatus, message: str = "") -> health_pb2.ComponentHealth:
    return health_pb2.ComponentHealth(name=name, status=status, message=message)


class SystemHealth:
    """Checks every module's health and the mesh's NATS concurrently, and caches the verdict
    for `cache_seconds`.

    Args:
        registry: The modules.
        transport: How the modules are reached.
        timeout: How long each module's health call may take.
        cache_seconds: How long a verdict is reused.
        infrastructure: Checks NATS (`NatsHealth`); None checks modules only.
    """

    def __init__(
        self,
        registry: Registry,
        transport: Transport,
        *,
        timeout: float,
        cache_seconds: float,
        infrastructure: InfrastructureCheck | None = None,
    ) -> None:
        self._registry = registry
        self._transport = transport
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._infrastructure = infrastructure
        self._cached: coordinator_pb2.GetSystemHealthResponse | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def check(self, *, fresh: bool = False) -> coordinator_pb2.GetSystemHealthResponse:
        async with self._lock:  # concurrent callers share one round of checks
            age = time.monotonic() - self._cached_at
            if self._cached is not None and not fresh and age < self._cache_seconds:
                answer = coordinator_pb2.GetSystemHealthResponse()
                answer.CopyFrom(self._cached)
                answer.max_age_ms = int(age * 1000)
                return answer
            records = [r for r in self._registry.records.values() if r.state is not State.SKIPPED]
            checked, components = await asyncio.gather(
                asyncio.gather(*(self._check_one(record) for record in records)), self._check_infrastructure()
            )
            for record, health in zip(records, checked, strict=True):
                _note_missing_dependencies(health, record, self._registry)
                record.last_health = health
            self._cached = coordinator_pb2.GetSystemHealthResponse(
                status=max(overall(records, checked), *(c.status for c in components)),
                modules=checked,
                checked_at=now(),
                max_age_ms=0,
                components=components,
            )
            self._cached_at = time.monotonic()
            return self._cached

    async def _check_infrastructure(self) -> list[health_pb2.ComponentHealth]:
        return await self._infrastructure() if self._infrastructure is not None else []

    async def _check_one(self, record: ModuleRecord) -> health_pb2.ModuleHealth:
        if not record.address or record.state not in _REACHABLE_STATES:
            message = record.state_reason or f"the module is {record.state.name}"
            return health_pb2.ModuleHealth(
                name=record.name, status=UNHEALTHY, state=record.state.value, message=message, last_checked=now()
            )
        client = ModuleClient(record.name, record.address, self._transport)
        started = time.monotonic()
        try:
            return await client.health(self._timeout)
        except MeshError as error:
            latency = duration_pb2.Duration()
            latency.FromNanoseconds(int((time.monotonic() - started) * 1e9))
            return health_pb2.ModuleHealth(
                name=record.name,
                status=UNHEALTHY,
                state=record.state.value,
                message=f"health check failed: {error.message}",
                last_checked=now(),
            )
        finally:
            await client.close()


def _note_missing_dependencies(health: health_pb2.ModuleHealth, record: ModuleRecord, registry: Registry) -> None:
    """A module whose required dependency is not RUNNING cannot serve what needs it, however
    well it answers itself: it is shown at least DEGRADED (UNHEALTHY when the dependency has
    FAILED or is gone), with a `dependency:<name>` component saying why."""
    for dependency in record.manifest.dependencies:
        if dependency.optional:
            continue
        target = registry.get(dependency.name)
        if target is not None and target.state is State.RUNNING:
            continue
        state = target.state.name if target is not None else "not in the mesh"
        broken = target is None or target.state in (State.FAILED, State.STOPPED)
        status = UNHEALTHY if broken else DEGRADED
        reason = f"requires {dependency.name}, which is {state}"
        if target is not None and target.state_reason:
            reason += f" ({target.state_reason})"
        health.components.append(_component(f"dependency:{dependency.name}", status, reason))
        health.status = max(health.status, status)
        health.message = "; ".join(filter(None, (health.message, reason)))


def overall(records: list[ModuleRecord], checked: list[health_pb2.ModuleHealth]) -> health_pb2.HealthStatus:
    """HEALTHY when every module is; UNHEALTHY when a critical module is; else DEGRADED."""
    if all(health.status == HEALTHY for health in checked):
        return HEALTHY
    for record, health in zip(records, checked, strict=True):
        if record.critical and health.status == UNHEALTHY:
            return UNHEALTHY
    return DEGRADED


async def collect_metrics(
    registry: Registry, deadline_seconds: float, transport: Transport
) -> coordinator_pb2.GetSystemMetricsResponse:
    """Every reachable module's metrics, fetched concurrently, with totals."""
    records = [r for r in registry.records.values() if r.address and r.state is State.RUNNING]

    async def one(record: ModuleRecord) -> metrics_pb2.ModuleMetrics | None:
        client = ModuleClient(record.name, record.address, transport)
        try:
            return await client.metrics(deadline_seconds)
        except MeshError:
            return None
        finally:
            await client.close()

    modules = [m for m in await asyncio.gather(*(one(r) for r in records)) if m is not None]
    total_requests = sum(m.request_count for m in modules)
    weighted = sum(m.avg_latency_ms * m.request_count for m in modules)
    events = metrics_pb2.EventCounts()
    for m in modules:
        for field in EVENT_COUNT_FIELDS:
            setattr(events, field, getattr(events, field) + getattr(m.events, field))
    return coordinator_pb2.GetSystemMetricsResponse(
        total_requests=total_requests,
        total_errors=sum(m.error_count for m in modules),
        avg_latency_ms=weighted / total_requests if total_requests else 0.0,
        modules=modules,
        collected_at=now(),
        events=events,
    )


def graph_response(registry: Registry) -> coordinator_pb2.GetGraphResponse:
    """The dependency graph of the modules that are not skipped, with states."""
    records = {name: r for name, r in registry.records.items() if r.state is not State.SKIPPED}
    manifests = {name: r.manifest for name, r in records.items()}
    required = graph.required_dependencies(manifests)
    dependents = graph.dependents_of(manifests)
    nodes = [
        coordinator_pb2.GraphNode(
            name=name,
            version=record.manifest.version,
            state=record.state.value,
            dependencies=record.manifest.to_proto().dependencies,
            transitive_dependencies=graph.transitive(name, required),
            dependents=dependents[name],
            transitive_dependents=graph.transitive(name, dependents),
            critical=record.critical,
            depth=graph.depth(name, manifests),
        )
        for name, record in records.items()
    ]
    order = graph.initialization_order(manifests) if not graph.find_cycles(manifests) else []
    return coordinator_pb2.GetGraphResponse(nodes=nodes, initialization_order=order)
