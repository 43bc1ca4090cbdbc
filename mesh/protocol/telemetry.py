"""OpenTelemetry set-up by convention, for module processes and the coordinator alike.

Configured from the standard variables: OTEL_SERVICE_NAME (default: the module's name, or
`mesh-coordinator`), OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER (otlp | console | none,
comma-separated; default otlp when OTEL_EXPORTER_OTLP_ENDPOINT is set, else none),
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER(_ARG), OTEL_METRIC_EXPORT_INTERVAL,
OTEL_RESOURCE_ATTRIBUTES. The exporters and the sampler read their own variables; this
module only decides which exporters exist and names the resource.

gRPC client spans, and the coordinator's server spans, come from
opentelemetry-instrumentation-grpc (`client_interceptors`, `server_interceptors`); a module
server's SERVER spans come from its gated handlers (`mesh.protocol.server_spans`, cheaper per
call). Health checks and reflection are left out as noise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import Resource

# The SDK's providers, processors and exporters, and opentelemetry-instrumentation-grpc, are
# imported only by a process that exports (below): a module process that does not is 3-4 MiB
# smaller at rest without them (bench/rpc.py's idle RSS). The zygote imports them all once
# for its children (sdk/zygote.py).

_log = logging.getLogger("sdk.telemetry")
_configured: dict[str, Any] = {}


def exporters(kind: str, env: Mapping[str, str]) -> list[str]:
    """The exporters named by OTEL_<KIND>_EXPORTER, defaulting to otlp only when an endpoint is set."""
    default = (
        "otlp" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT") else "none"
    )
    names = [name.strip().lower() for name in env.get(f"OTEL_{kind}_EXPORTER", default).split(",") if name.strip()]
    unknown = sorted(set(names) - {"otlp", "console", "none"})
    if unknown:
        raise ValueError(f"OTEL_{kind}_EXPORTER names {unknown}; expected otlp, console or none")
    return [name for name in names if name != "none"]


def environment_configures_export(env: Mapping[str, str]) -> bool:
    """Whether `env` says where telemetry goes (else the coordinator's settings may)."""
    return any(
        env.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER")
    )


def is_configured() -> bool:
    return bool(_configured)


def configure_telemetry(
    *,
    service_name: str,
    service_version: str,
    instance_id: str,
    module: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> bool:
    """Install the tracer and meter providers of this process, once.

    Args:
        service_name: The default service.name (OTEL_SERVICE_NAME wins).
        service_version: service.version.
        instance_id: service.instance.id (unique per process).
        module: The module's name, as the `mesh.module` resource attribute.
        extra_env: OTEL_* settings from the coordinator; the process's own environment wins.

    Returns:
        False when telemetry was already configured in this process (the first call wins).
    """
    if _configured:
        return False
    env = {**(extra_env or {}), **os.environ}
    for key, value in (extra_env or {}).items():
        os.environ.setdefault(key, value)  # the exporters read their settings from the environment
    attributes = {
        "service.name": env.get("OTEL_SERVICE_NAME", service_name),
        "service.version": service_version,
        "service.instance.id": instance_id,
    }
    if module:
        attributes["mesh.module"] = module
    resource = _HashedOnce.of(Resource.create(attributes))
    span_exporters = exporters("TRACES", env)
    metric_exporters = exporters("METRICS", env)
    _configured["done"] = True
    # With nothing to export, the API's no-op providers stay: spans that nobody receives
    # would still cost their recording on every call.
    if span_exporters:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider(resource=resource)
        for name in span_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(name)))
        trace.set_tracer_provider(tracer_provider)
        _configured["tracer_provider"] = tracer_provider
    if metric_exporters:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers = [PeriodicExportingMetricReader(_metric_exporter(name)) for name in metric_exporters]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
        _configured["meter_provider"] = meter_provider
    return True


class _HashedOnce(Resource):
    """A resource that works its hash out once. The OTLP exporters group every span (and
    metric) they encode by its resource, and Resource.__hash__ serializes all of the
    resource's attributes to JSON each time: 17 of the 164 samples of the span exporter's
    thread in a py-spy profile of a traced module under load (bench/tracing.py). A resource
    never changes once made, so neither does its hash."""

    def __init__(self, attributes: Mapping[str, Any], schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    @classmethod
    def of(cls, resource: Resource) -> _HashedOnce:
        return cls(resource.attributes, resource.schema_url)

    def __hash__(self) -> int:
        return self._hash


def _span_exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def shutdown_telemetry() -> None:
    """Flush and stop the exporters (at process exit), so the last spans and metrics get out."""
    for provider in (_configured.get("tracer_provider"), _configured.get("meter_provider")):
        if provider is None:
            continue
        try:
            provider.shutdown()
        except Exception as error:  # exporting must never keep a process from exiting
            _log.warning("telemetry shutdown: %s", error)


def tracing() -> bool:
    """Whether this process exports spans (an SDK tracer provider is installed)."""
    return "tracer_provider" in _configured


# opentelemetry-instrumentation-grpc ships no annotations, hence the ignores below.
def server_interceptors() -> list[Any]:
    """The tracing interceptor for the coordinator's grpc.aio server (spans are children of
    the caller's). A module server makes its spans in its gated handlers instead
    (`mesh.protocol.server_spans`).

    None when the process does not trace: the interceptor costs a third of the throughput
    of a trivial call even with no-op spans (bench/rpc.py), so it is only there when used.
    Telemetry is configured before the coordinator's server starts, so a traced coordinator
    always has it.
    """
    if not tracing():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=_not_traced())]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """The tracing interceptors for a grpc.aio channel (they carry the trace context); none
    when the process does not trace."""
    if not tracing():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(filter_=_not_traced()))  # type: ignore[no-untyped-call]


def _not_traced() -> Any:
    """The interceptors' filter: every call but health checks and reflection, left out as noise."""
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(
        filters.any_of(filters.service_prefix("grpc.health."), filters.service_prefix("grpc.reflection."))
    )
