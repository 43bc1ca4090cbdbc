"""The metrics served at `GET /metrics` in the Prometheus text format (prometheus-client writes
it): the gateway's own (requests by module, method and HTTP status, their latency, rate-limit
refusals, the rate-limit sharing between replicas) and the mesh's, as the coordinator collects
them from every module when scraped (requests and errors per module, events per module, type
and outcome).

Module and method labels are only ever names the mesh has: a request for a module or method
that does not exist is counted under "-", so that no caller can grow the label sets without
bound by inventing names.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from mesh.protocol.names import EVENT_COUNT_FIELDS
from mesh.v1 import coordinator_pb2

UNKNOWN = "-"
"""The module or method label of a request for a name the mesh does not have."""

LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    """The counters and histograms of one gateway, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "mesh_gateway_requests",
            "API requests answered, by module, method and HTTP status",
            ["module", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mesh_gateway_request_duration_seconds",
            "How long API requests took to answer, by module and method",
            ["module", "method"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self._rate_limited = Counter(
            "mesh_gateway_rate_limited",
            "API requests refused by the rate limit (429), by module and method",
            ["module", "method"],
            registry=self.registry,
        )

        self._shared_calls = Counter(
            "mesh_gateway_rate_limit_shared_calls",
            "Calls the other gateway replicas admitted, as reported to this one over NATS (deducted here)",
            registry=self.registry,
        )
        self._unshared_calls = Counter(
            "mesh_gateway_rate_limit_unshared_calls",
            "Calls this gateway admitted while it could not reach NATS: the other replicas never heard of them",
            registry=self.registry,
        )
        self._share_refused = Counter(
            "mesh_gateway_rate_limit_reports_refused",
            "Messages on the rate-limit subject that were no rate-limit report (ignored)",
            registry=self.registry,
        )
        self._sharing = Gauge(
            "mesh_gateway_rate_limit_sharing",
            "1 while this gateway shares its rate limits with the other replicas through NATS, 0 while it cannot",
            registry=self.registry,
        )

    def shared_calls(self, calls: int) -> None:
        """Calls another replica reported."""
        self._shared_calls.inc(calls)

    def unshared_calls(self, calls: int) -> None:
        """Calls admitted while NATS was away, not reported."""
        self._unshared_calls.inc(calls)

    def share_refused(self) -> None:
        """A message that was no report."""
        self._share_refused.inc()

    def sharing(self, connected: bool) -> None:
        """Whether the rate limits are shared now."""
        self._sharing.set(1 if connected else 0)

    def rate_limited(self, module: str, method: str) -> None:
        """One API request refused by the rate limit."""
        self._rate_limited.labels(module, method).inc()

    def record(self, module: str, method: str, status: int, seconds: float) -> None:
        """One API request answered; `module` and `method` as routed, or UNKNOWN."""
        self._requests.labels(module, method, str(status)).inc()
        self._latency.labels(module, method).observe(seconds)

    def exposition(self, mesh: coordinator_pb2.GetSystemMetricsResponse | None = None) -> bytes:
        """Every metric in the Prometheus text format: the gateway's, and the mesh's of `mesh`."""
        own = generate_latest(self.registry)
        if mesh is None:
            return own
        scraped = CollectorRegistry()
        scraped.register(_MeshMetrics(mesh))
        return own + generate_latest(scraped)


class _MeshMetrics(Collector):
    """The modules' counts as the coordinator collected them for one scrape. They are each
    module process's own counts since it started: a restarted module starts from zero, which
    Prometheus reads as a counter reset."""

    def __init__(self, answer: coordinator_pb2.GetSystemMetricsResponse) -> None:
        self._answer = answer

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("mesh_module_requests", "gRPC calls a module served", labels=["module"])
        errors = CounterMetricFamily("mesh_module_errors", "gRPC calls a module failed", labels=["module"])
        events = CounterMetricFamily(
            "mesh_module_events", "events by module, type and outcome", labels=["module", "type", "outcome"]
        )
        for module in self._answer.modules:
            requests.add_metric([module.name], module.request_count)
            errors.add_metric([module.name], module.error_count)
            for kind in module.event_types:
                for outcome in EVENT_COUNT_FIELDS:
                    events.add_metric([module.name, kind.type, outcome], getattr(kind.counts, outcome))
        yield from (requests, errors, events)
