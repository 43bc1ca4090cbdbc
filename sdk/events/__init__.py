"""Events between modules over NATS: typed handlers, publishing, durable delivery with
redelivery and dead letters, and ephemeral delivery for high-rate signals.

On the wire an event is a CloudEvent in the NATS binding's binary mode (written by
`mesh.protocol.cloudevents`); subjects, streams and consumer names come from
`mesh.protocol.names`. Authors use the names re-exported by `sdk`; the rest of the SDK
uses `EventBus`, `handler_bindings` and `check_declared_events`.

The parts, each a private module: `_options` (`@on`, Durable / Ephemeral), `_event` (what
a handler sees and raises), `_payloads` (payload codecs), `_bindings` (a class's handlers
and their checks against the manifest), `_delivery` (one delivery, one outcome),
`_consumers` (the durable consumers as data, and their provisioning), `_tracing` (the OpenTelemetry middleware),
`_publishing`, `_dead_letters`, and `_bus` (the lifecycle-bound whole).
"""

from sdk.events._bindings import HandlerBinding, check_declared_events, handler_bindings
from sdk.events._bus import EventBus
from sdk.events._consumers import event_consumers
from sdk.events._delivery import DeliveryObserver, DeliveryReport, Outcome, Verdict
from sdk.events._event import Drop, Event, Retry, current_event
from sdk.events._options import Delivery, Durable, Ephemeral, HandlerOptions, on
from sdk.events._payloads import codec_for, content_type_of
from sdk.events._publishing import Publisher
from sdk.events._tracing import EventTracing

__all__ = [
    # what authors use (re-exported by sdk)
    "Delivery",
    "Drop",
    "Durable",
    "Ephemeral",
    "Event",
    "Retry",
    "current_event",
    "on",
    # what the rest of the SDK uses
    "DeliveryObserver",
    "DeliveryReport",
    "EventBus",
    "EventTracing",
    "Publisher",
    "Outcome",
    "Verdict",
    "HandlerBinding",
    "HandlerOptions",
    "check_declared_events",
    "event_consumers",
    "codec_for",
    "content_type_of",
    "handler_bindings",
]
