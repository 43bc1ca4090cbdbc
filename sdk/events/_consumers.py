"""A module's durable consumers as data: one per (module, durable handler), shared by the
module's replicas so that each event is handled once per module.

In a mesh the coordinator creates them before Initialize, from what Describe reports
(`consumer_protos`), because a module's NATS identity may read only its own consumers and
may not create any; a module run alone creates them itself (`prepare_consumers`). Either
way a consumer exists before the module starts, so no event published meanwhile is missed.
"""

from __future__ import annotations

import functools
from datetime import datetime

from google.protobuf import duration_pb2
from nats.js import JetStreamContext

from mesh.protocol.errors import MeshError
from mesh.protocol.names import consumer_name
from mesh.protocol.streams import ConsumerSettings, ensure_consumer, find_consumer, provisioned
from mesh.v1 import lifecycle_pb2
from sdk.events._bindings import HandlerBinding


def consumer_settings(module: str, bindings: list[HandlerBinding]) -> list[ConsumerSettings]:
    """The durable consumers of a module's durable handlers."""
    found = []
    for binding in bindings:
        durable = binding.durable
        if durable is not None:
            found.append(
                ConsumerSettings(
                    name=consumer_name(module, binding.method_name),
                    patterns=[binding.options.pattern],
                    ack_wait_seconds=durable.ack_wait,
                    max_ack_pending=max(durable.concurrency * 4, 16),
                )
            )
    return found


def consumer_protos(consumers: list[ConsumerSettings]) -> list[lifecycle_pb2.EventConsumer]:
    """The consumers as Describe reports them to the coordinator."""
    protos = []
    for consumer in consumers:
        ack_wait = duration_pb2.Duration()
        ack_wait.FromNanoseconds(int(consumer.ack_wait_seconds * 1e9))
        protos.append(
            lifecycle_pb2.EventConsumer(
                name=consumer.name,
                patterns=list(consumer.patterns),
                ack_wait=ack_wait,
                max_ack_pending=consumer.max_ack_pending,
            )
        )
    return protos


def event_consumers(module: str, bindings: list[HandlerBinding]) -> list[lifecycle_pb2.EventConsumer]:
    """What Describe reports of a module's handlers (and `mesh nats permissions` of its code)."""
    return consumer_protos(consumer_settings(module, bindings))


async def prepare_consumers(
    js: JetStreamContext,
    module: str,
    consumers: list[ConsumerSettings],
    *,
    created_by_mesh: bool,
    events_since: datetime | None,
) -> None:
    """Make sure every consumer is there with its filters: check what the coordinator created,
    or create them when the module runs alone.

    Raises:
        MeshError: MODULE_UNAVAILABLE when the mesh should have created a consumer and did not.
    """
    for consumer in consumers:
        what = f"the consumer {consumer.name} of module {module}"
        if not created_by_mesh:
            await provisioned(f"creating {what}", functools.partial(ensure_consumer, js, consumer, events_since))
        elif not await provisioned(f"looking up {what}", functools.partial(find_consumer, js, consumer)):
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"{what} is missing or reads other subjects than the handler subscribes to; the coordinator "
                "creates it from what Describe reports, so restart the module through the coordinator "
                "(mesh restart) to have it created again",
                metadata={"module": module, "consumer": consumer.name},
            )
