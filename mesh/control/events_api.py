"""mesh.v1.Events on the coordinator: publishing for services that do not speak NATS, and
dead letters over gRPC (what `mesh dlq` does over NATS directly)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from nats.aio.client import Client as NatsClient
from opentelemetry import propagate

from mesh.control import dlq
from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import CloudEvent
from mesh.protocol.errors import MeshError, answer
from mesh.protocol.manifest import validate_event_type
from mesh.protocol.names import check_token, event_subject
from mesh.v1 import event_pb2, event_pb2_grpc


def _timestamp(text: str) -> timestamp_pb2.Timestamp:
    """An RFC 3339 time as a Timestamp; unset when the text is not one."""
    time = timestamp_pb2.Timestamp()
    try:
        time.FromDatetime(datetime.fromisoformat(text))
    except ValueError:
        pass
    return time


def wire_event(event: event_pb2.Event) -> CloudEvent:
    """A mesh.v1.Event as it travels on NATS."""
    return CloudEvent(
        id=event.id,
        type=event.type,
        source=event.source,
        data=event.data,
        time=event.time.ToDatetime(tzinfo=UTC).isoformat(),
        subject=event.subject,
        tenant=event.tenant,
        company=event.company,
        datacontenttype=event.datacontenttype,
        dataschema=event.dataschema,
        traceparent=event.traceparent,
        tracestate=event.tracestate,
        extensions=dict(event.extensions),
    )


def event_proto(wire: CloudEvent) -> event_pb2.Event:
    """An event read back from NATS, as a mesh.v1.Event."""
    return event_pb2.Event(
        id=wire.id,
        source=wire.source,
        type=wire.type,
        specversion=wire.specversion,
        time=_timestamp(wire.time),
        subject=wire.subject,
        tenant=wire.tenant,
        company=wire.company,
        datacontenttype=wire.datacontenttype,
        dataschema=wire.dataschema,
        data=wire.data,
        traceparent=wire.traceparent,
        tracestate=wire.tracestate,
        extensions=dict(wire.extensions),
    )


def dead_letter_proto(letter: dlq.DeadLetter) -> event_pb2.DeadLetter:
    return event_pb2.DeadLetter(
        seq=letter.seq,
        event=event_proto(letter.event),
        module=letter.module,
        handler=letter.handler,
        reason=letter.reason,
        deliveries=int(letter.deliveries) if letter.deliveries.isdigit() else 0,
        time=_timestamp(letter.time),
    )


class EventsServicer(event_pb2_grpc.EventsServicer):
    """Publishes and replays through the coordinator's own NATS connection."""

    def __init__(self, connection: Callable[[], NatsClient]) -> None:
        self._connection = connection

    async def Publish(
        self, request: event_pb2.PublishRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_pb2.PublishResponse:
        async def publish() -> event_pb2.PublishResponse:
            event = event_pb2.Event()
            event.CopyFrom(request.event)
            try:
                validate_event_type(event.type)
            except ValueError as error:
                raise MeshError("INVALID_EVENT", f"event type {event.type!r}: {error}") from None
            if not event.source:
                raise MeshError("INVALID_EVENT", "an event needs a source, e.g. 'mesh://billing-service'")
            if event.tenant:
                check_token(event.tenant, "tenant")
            try:
                cloudevents.check_extensions(event.extensions)
            except cloudevents.InvalidExtension as error:
                raise MeshError("INVALID_EVENT", str(error)) from None
            event.id = event.id or uuid.uuid4().hex
            if not event.HasField("time"):
                event.time.GetCurrentTime()
            subject = event_subject(event.type, event.tenant or None)
            client = self._connection()
            if len(event.data) > client.max_payload:
                raise MeshError(
                    "INVALID_EVENT", f"the event's data is {len(event.data)} bytes; NATS takes {client.max_payload}"
                )
            headers = cloudevents.to_nats(wire_event(event))
            if "traceparent" not in headers:
                propagate.inject(headers)  # the caller's trace (the gRPC server span), when there is one
            await client.jetstream().publish(subject, event.data, timeout=10, headers=headers)
            return event_pb2.PublishResponse(id=event.id, subject=subject)

        return await answer(context, publish)

    async def ListDeadLetters(
        self, request: event_pb2.ListDeadLettersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_pb2.ListDeadLettersResponse:
        letters = await dlq.list_dead_letters(self._connection(), module=request.module or None)
        return event_pb2.ListDeadLettersResponse(dead_letters=[dead_letter_proto(letter) for letter in letters])

    async def ReplayDeadLetter(
        self, request: event_pb2.ReplayDeadLetterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_pb2.ReplayDeadLetterResponse:
        async def replay() -> event_pb2.ReplayDeadLetterResponse:
            try:
                letter = await dlq.replay(self._connection(), request.seq, keep=request.keep)
            except dlq.DeadLetterNotFound as error:
                raise MeshError("INVALID_EVENT", str(error), status=grpc.StatusCode.NOT_FOUND) from None
            return event_pb2.ReplayDeadLetterResponse(dead_letter=dead_letter_proto(letter))

        return await answer(context, replay)
