"""mesh.v1.Events on the coordinator: publishing for services that do not speak NATS, and
dead letters over gRPC (what `mesh dlq` does over NATS directly).

An event published here becomes NATS headers on the coordinator's own connection: a value
that could break the header block (a line break) or the server's limits is refused with
INVALID_EVENT first, so no caller can cut the coordinator off from NATS.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import nats.js.errors
from google.protobuf import timestamp_pb2
from nats.aio.client import Client as NatsClient
from opentelemetry import propagate

from mesh.control import dlq
from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import CloudEvent
from mesh.protocol.errors import MeshError, answer, excerpt
from mesh.protocol.manifest import validate_event_type
from mesh.protocol.names import check_token, event_subject
from mesh.v1 import event_pb2, event_pb2_grpc

MAX_ATTRIBUTE_CHARS = 1024
"""The longest attribute (or extension value) an event may carry: each is a NATS header."""
MAX_EXTENSIONS = 32
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
_HEADER_ATTRIBUTES = (
    "id",
    "source",
    "subject",
    "company",
    "datacontenttype",
    "dataschema",
    "traceparent",
    "tracestate",
)


def check_attributes(event: event_pb2.Event) -> None:
    """Refuse an event whose attributes cannot travel as NATS headers.

    Raises:
        MeshError: INVALID_EVENT naming the attribute.
    """
    values = [(name, getattr(event, name)) for name in _HEADER_ATTRIBUTES]
    if len(event.extensions) > MAX_EXTENSIONS:
        raise MeshError("INVALID_EVENT", f"the event has {len(event.extensions)} extensions; at most {MAX_EXTENSIONS}")
    values += [(f"extension {excerpt(name)}", value) for name, value in event.extensions.items()]
    for name, value in values:
        if len(value) > MAX_ATTRIBUTE_CHARS or not value.isprintable():
            raise MeshError(
                "INVALID_EVENT",
                f"event attribute {name} {excerpt(value)} cannot be a NATS header: use at most "
                f"{MAX_ATTRIBUTE_CHARS} printable characters, no line breaks",
            )
    for name in event.extensions:  # fullmatch: a name ending in a line break passes a `$`-anchored check
        if not _EXTENSION_NAME.fullmatch(name):
            raise MeshError(
                "INVALID_EVENT",
                f"extension {excerpt(name)} is not a CloudEvents attribute name: use 1-20 lowercase letters and digits",
            )


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
                raise MeshError("INVALID_EVENT", f"event type {excerpt(event.type)}: {error}") from None
            if not event.source:
                raise MeshError("INVALID_EVENT", "an event needs a source, e.g. 'mesh://billing-service'")
            if event.tenant:
                check_token(event.tenant, "tenant")
            check_attributes(event)
            if event.HasField("time"):
                try:
                    event.time.ToDatetime(tzinfo=UTC)
                except (ValueError, OverflowError):
                    raise MeshError(
                        "INVALID_EVENT", f"event time {event.time.seconds} s is no date; leave it unset for now"
                    ) from None
            try:
                cloudevents.check_extensions(event.extensions)
            except cloudevents.InvalidExtension as error:
                raise MeshError("INVALID_EVENT", str(error)) from None
            event.id = event.id or uuid.uuid4().hex
            if not event.HasField("time"):
                event.time.GetCurrentTime()
            subject = event_subject(event.type, event.tenant or None)
            client = self._connection()
            headers = cloudevents.to_nats(wire_event(event))
            size = len(event.data) + sum(len(key) + len(value.encode()) + 4 for key, value in headers.items())
            if size > client.max_payload:
                raise MeshError(
                    "INVALID_EVENT",
                    f"the event is {size} bytes with its headers; NATS takes {client.max_payload}",
                )
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
            except nats.js.errors.BadRequestError:  # a sequence the stream cannot hold, e.g. 0
                raise MeshError(
                    "INVALID_EVENT",
                    f"no dead letter {request.seq}; `mesh dlq list` shows the sequence numbers there are",
                    status=grpc.StatusCode.NOT_FOUND,
                ) from None
            return event_pb2.ReplayDeadLetterResponse(dead_letter=dead_letter_proto(letter))

        return await answer(context, replay)
