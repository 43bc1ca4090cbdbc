"""OpenTelemetry for events as one middleware object (after FastStream's NATS middleware):
a PRODUCER span around a publish, whose W3C context travels in the message headers, and
a CONSUMER span around a delivery, continued from those headers — so a request, the event
it publishes and the handling of that event share one trace.

When the process does not trace (no exporter configured, `mesh.protocol.telemetry.tracing`),
no span is built: OpenTelemetry's no-op spans still cost a context manager, an attribute
dict and two context switches each, and took a third of the SDK's per-event time on the
ephemeral path (cProfile of bench/events.py). A trace context that arrives is still passed
on, as the no-op spans would: the delivery runs with it attached, and a publish injects the
context it runs in, so an untraced module does not break its callers' traces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode

from mesh.protocol.active_span import active
from mesh.protocol.cloudevents import ID_HEADER, SOURCE_HEADER, TYPE_HEADER
from mesh.protocol.telemetry import tracing
from sdk.events._delivery import Outcome

_tracer = trace.get_tracer("mesh.sdk.events")


class EventTracing:
    """Spans of one module's event traffic, named `<type> publish` / `<type> process` with
    the OpenTelemetry messaging attributes."""

    def __init__(self, module_name: str) -> None:
        self._module = module_name
        self._propagator: TextMapPropagator | None = None
        self._fields: frozenset[str] = frozenset()

    def _propagated_headers(self) -> frozenset[str]:
        """The headers the process's propagators read (W3C `traceparent`, `tracestate` and
        `baggage` unless OTEL_PROPAGATORS says otherwise), asked again only when they change."""
        propagator = propagate.get_global_textmap()
        if propagator is not self._propagator:
            self._propagator, self._fields = propagator, frozenset(propagator.fields)
        return self._fields

    async def publish(
        self,
        event_type: str,
        target: str,
        event_id: str,
        headers: dict[str, str],
        send: Callable[[dict[str, str]], Awaitable[None]],
    ) -> None:
        """Run `send(headers)` in a PRODUCER span, with the span's context added to `headers`."""
        if not tracing():
            if otel_context.get_current():  # a context to pass on (an empty one injects nothing)
                propagate.inject(headers)
            await send(headers)
            return
        span = _tracer.start_span(
            f"{event_type} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "publish",
                "messaging.destination.name": target,
                "messaging.message.id": event_id,
                "cloudevents.event_type": event_type,
                "mesh.module": self._module,
            },
        )
        with active(span):
            propagate.inject(headers)
            await send(headers)

    async def process(
        self,
        message: Msg,
        consumer_group: str,
        attempt: int,
        deliver: Callable[[], Awaitable[Outcome]],
    ) -> Outcome:
        """Run `deliver()` in a CONSUMER span, child of the producer's span through the
        headers' trace context; a handler's error marks the span failed."""
        headers = message.headers or {}
        if not tracing():
            if self._propagated_headers().isdisjoint(headers):
                return await deliver()
            token = otel_context.attach(propagate.extract(headers))
            try:
                return await deliver()
            finally:
                otel_context.detach(token)
        event_type = headers.get(TYPE_HEADER, "invalid")
        span = _tracer.start_span(
            f"{event_type} process",
            context=propagate.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.subject,
                "messaging.message.id": headers.get(ID_HEADER, ""),
                "messaging.consumer.group.name": consumer_group,
                "cloudevents.event_type": event_type,
                "cloudevents.event_source": headers.get(SOURCE_HEADER, ""),
                "mesh.module": self._module,
                "mesh.event.attempt": attempt,
            },
        )
        with active(span):
            outcome = await deliver()
            if outcome.error is not None:
                error = outcome.error
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            return outcome
