"""In-process counters behind the Lifecycle.GetMetrics call, and the OpenTelemetry
instruments fed beside them.

Why not read GetMetrics from the OpenTelemetry SDK's own aggregation: GetMetrics must
answer cumulative counts and percentiles on demand, with no exporter configured, at the
cost of a few integer additions per call. The OpenTelemetry instruments (exported over
OTLP when configured) carry the same facts with attributes, for dashboards.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2
from opentelemetry import metrics

from mesh.protocol.names import EVENT_COUNT_FIELDS
from mesh.v1 import metrics_pb2

# Upper bounds in milliseconds of the latency histogram's buckets; the last is open.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    math.inf,
)


@dataclass
class LatencyHistogram:
    """A fixed-bucket histogram: constant memory, O(log buckets) per observation."""

    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))
    total: int = 0

    def observe(self, milliseconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_MS, milliseconds)] += 1
        self.total += 1

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the q-quantile (0 when empty)."""
        if self.total == 0:
            return 0.0
        rank = q * self.total
        seen = 0
        for bound, count in zip(LATENCY_BUCKETS_MS, self.counts, strict=True):
            seen += count
            if seen >= rank and count:
                return bound if bound != math.inf else LATENCY_BUCKETS_MS[-2]
        return LATENCY_BUCKETS_MS[-2]


@dataclass
class MethodStats:
    """Counts of one gRPC method."""

    requests: int = 0
    errors: int = 0
    total_ms: float = 0.0
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)

    def to_proto(self, method: str) -> metrics_pb2.MethodMetrics:
        return metrics_pb2.MethodMetrics(
            method=method,
            request_count=self.requests,
            error_count=self.errors,
            avg_latency_ms=self.total_ms / self.requests if self.requests else 0.0,
            p50_latency_ms=self.histogram.quantile(0.5),
            p99_latency_ms=self.histogram.quantile(0.99),
        )


class Counter:
    """A module-defined monotonic counter, shown under its name in GetMetrics `custom`."""

    def __init__(self) -> None:
        self.value = 0.0

    def add(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up; got {amount}")
        self.value += amount


class MethodCalls:
    """Records the calls of one method, in its MethodStats (made at its first call: GetMetrics
    lists the methods called) and in the OpenTelemetry histogram. What depends only on the
    method and the status code is worked out once: this runs on every call.

    Args:
        method: The full method name.
        methods: The recorder's stats, by method, where this method's go.
        duration: The OpenTelemetry histogram of call durations.
    """

    __slots__ = ("_attributes", "_duration", "_method", "_methods", "_ok", "_stats")

    def __init__(self, method: str, methods: dict[str, MethodStats], duration: metrics.Histogram) -> None:
        self._method = method
        self._methods = methods
        self._duration = duration
        self._stats: MethodStats | None = None
        self._attributes: dict[str, dict[str, str]] = {}
        self._ok = self._attributes_of("OK")

    def record(self, milliseconds: float, ok: bool, code: str = "OK") -> None:
        """One call that took `milliseconds` and ended with status `code`; `ok`: it succeeded."""
        self._duration.record(milliseconds, self._ok if code == "OK" else self._attributes_of(code))
        stats = self._stats
        if stats is None:
            stats = self._stats = self._methods.setdefault(self._method, MethodStats())
        stats.requests += 1
        stats.total_ms += milliseconds
        stats.histogram.observe(milliseconds)
        if not ok:
            stats.errors += 1

    def _attributes_of(self, code: str) -> dict[str, str]:
        attributes = self._attributes.get(code)
        if attributes is None:
            service, _, name = self._method.lstrip("/").partition("/")
            attributes = self._attributes[code] = {
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "rpc.grpc.status_code": code,
            }
        return attributes


class ModuleMetricsRecorder:
    """Everything GetMetrics reports for one module."""

    def __init__(self, module_name: str, control_services: frozenset[str]) -> None:
        self.module_name = module_name
        self._control_services = control_services
        self.methods: dict[str, MethodStats] = {}
        self._method_calls: dict[str, MethodCalls] = {}
        self.events: dict[str, dict[str, int]] = {}
        self._event_attributes: dict[str, dict[str, str]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._counters: dict[str, Counter] = {}
        self.active_workers: Callable[[], int] = lambda: 0
        meter = metrics.get_meter("mesh.sdk")
        self._rpc_duration = meter.create_histogram(
            "rpc.server.duration", unit="ms", description="gRPC calls served, by method and status code"
        )
        self._event_counters = {
            outcome: meter.create_counter(f"mesh.events.{outcome}", description=f"events {outcome}, by type")
            for outcome in EVENT_COUNT_FIELDS
        }
        self._lifecycle_duration = meter.create_histogram(
            "mesh.lifecycle.duration", unit="s", description="how long lifecycle hooks took, by phase"
        )

    def calls_of(self, method: str) -> MethodCalls:
        """What records the calls of `method` (the same one each time it is asked)."""
        calls = self._method_calls.get(method)
        if calls is None:
            calls = self._method_calls[method] = MethodCalls(method, self.methods, self._rpc_duration)
        return calls

    def record_event(self, event_type: str, outcome: str, amount: int = 1) -> None:
        """Count an event outcome, one of EVENT_COUNT_FIELDS (the events feature calls this)."""
        if outcome not in EVENT_COUNT_FIELDS:
            raise ValueError(f"unknown event outcome {outcome!r}; expected one of {EVENT_COUNT_FIELDS}")
        counts = self.events.get(event_type)
        if counts is None:  # once per event type: this runs on every event, twice
            counts = self.events[event_type] = dict.fromkeys(EVENT_COUNT_FIELDS, 0)
            self._event_attributes[event_type] = {"mesh.event.type": event_type, "mesh.module": self.module_name}
        counts[outcome] += amount
        self._event_counters[outcome].add(amount, self._event_attributes[event_type])

    def record_lifecycle(self, phase: str, seconds: float) -> None:
        """How long a lifecycle phase (initialize, start, stop, reload) took."""
        self._lifecycle_duration.record(seconds, {"mesh.lifecycle.phase": phase, "mesh.module": self.module_name})

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Report `read()` under `name`; defining it again (e.g. at Reload) replaces the reader."""
        if name in self._counters:
            raise ValueError(f"metric {name!r} of module {self.module_name} is a counter already, not a gauge")
        self._gauges[name] = read

    def counter(self, name: str) -> Counter:
        """The counter called `name`; asking again (e.g. at Reload) returns the same one."""
        if name in self._gauges:
            raise ValueError(f"metric {name!r} of module {self.module_name} is a gauge already, not a counter")
        return self._counters.setdefault(name, Counter())

    def snapshot(self) -> metrics_pb2.ModuleMetrics:
        own = [stats for method, stats in self.methods.items() if _service_of(method) not in self._control_services]
        requests = sum(stats.requests for stats in own)
        total_ms = sum(stats.total_ms for stats in own)
        custom = {name: float(read()) for name, read in self._gauges.items()}
        custom.update({name: counter.value for name, counter in self._counters.items()})
        totals = dict.fromkeys(EVENT_COUNT_FIELDS, 0)
        for counts in self.events.values():
            for outcome, amount in counts.items():
                totals[outcome] += amount
        collected_at = timestamp_pb2.Timestamp()
        collected_at.GetCurrentTime()
        return metrics_pb2.ModuleMetrics(
            name=self.module_name,
            request_count=requests,
            error_count=sum(stats.errors for stats in own),
            avg_latency_ms=total_ms / requests if requests else 0.0,
            active_workers=self.active_workers(),
            events=metrics_pb2.EventCounts(**totals),
            event_types=[
                metrics_pb2.EventTypeMetrics(type=event_type, counts=metrics_pb2.EventCounts(**counts))
                for event_type, counts in sorted(self.events.items())
            ],
            methods=[stats.to_proto(method) for method, stats in sorted(self.methods.items())],
            custom=custom,
            collected_at=collected_at,
        )


def _service_of(method: str) -> str:
    """'/greeter.v1.Greeter/SayHello' -> 'greeter.v1.Greeter'."""
    return method.lstrip("/").partition("/")[0]
