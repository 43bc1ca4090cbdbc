"""The gateway's own metrics, served at `GET /metrics` in the Prometheus text format
(prometheus-client writes it): requests by module, method and HTTP status, and their latency.

Module and method labels are only ever names the mesh has: a request for a module or method
that does not exist is counted under "-", so that no caller can grow the label sets without
bound by inventing names.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

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

    def rate_limited(self, module: str, method: str) -> None:
        """One API request refused by the rate limit."""
        self._rate_limited.labels(module, method).inc()

    def record(self, module: str, method: str, status: int, seconds: float) -> None:
        """One API request answered; `module` and `method` as routed, or UNKNOWN."""
        self._requests.labels(module, method, str(status)).inc()
        self._latency.labels(module, method).observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)
