"""mesh.v1.Events on the coordinator: publishing for services that do not speak NATS, and
dead letters over gRPC (what `mesh dlq` does over NATS directly)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from google.protobuf import timestamp_pb2
from nats.aio.client import Client as NatsClient
from opentelemetry import propagate

from mesh import dlq
from mesh.v1 import event_pb2, event_pb2_grpc
from sdk import MeshError
from sdk._errors import answer
from sdk._events import SPEC_VERSION, check_token, event_subject
from sdk._manifest import validate_event_type

T = TypeVar("T")

_ATTRIBUTES = {
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-specversion",
    "ce-time",
    "ce-subject",
    "ce-tenant",
    "ce-company",
    "ce-dataschema",
    "content-type",
    "traceparent",
    "tracestate",
}


def event_headers(event: event_pb2.Event) -> dict[str, str]:
    """The NATS binary-mode headers of an event (what a module's publish sends)."""
    headers = {
        "ce-specversion": SPEC_VERSION,
        "ce-id": event.id,
        "ce-source": event.source,
        "ce-type": event.type,
        "ce-time": event.time.ToDatetime(tzinfo=UTC).isoformat(),
        "content-type": event.datacontenttype or "application/json",
        "Nats-Msg-Id": event.id,
    }
    for name, value in (
        ("ce-subject", event.subject),
        ("ce-tenant", event.tenant),
        ("ce-company", event.company),
        ("ce-dataschema", event.dataschema),
        ("traceparent", event.traceparent),
        ("tracestate", event.tracestate),
    ):
        if value:
            headers[name] = value
    for name, value in event.extensions.items():
        headers[f"ce-{name}"] = value
    if "traceparent" not in headers:
        propagate.inject(headers)  # the caller's trace (the gRPC server span), when there is one
    return headers


def event_of(headers: dict[str, str], data: bytes) -> event_pb2.Event:
    """An event read back from NATS headers and body."""
    time = timestamp_pb2.Timestamp()
    try:
        time.FromDatetime(datetime.fromisoformat(headers.get("ce-time", "")))
    except ValueError:
        pass
    return event_pb2.Event(
        id=headers.get("ce-id", ""),
        source=headers.get("ce-source", ""),
        type=headers.get("ce-type", ""),
        specversion=headers.get("ce-specversion", ""),
        time=time,
        subject=headers.get("ce-subject", ""),
        tenant=headers.get("ce-tenant", ""),
        company=headers.get("ce-company", ""),
        datacontenttype=headers.get("content-type", ""),
        dataschema=headers.get("ce-dataschema", ""),
        data=data,
        traceparent=headers.get("traceparent", ""),
        tracestate=headers.get("tracestate", ""),
        extensions={k[3:]: v for k, v in headers.items() if k.startswith("ce-") and k not in _ATTRIBUTES},
    )


def dead_letter_proto(letter: dlq.DeadLetter) -> event_pb2.DeadLetter:
    time = timestamp_pb2.Timestamp()
    try:
        time.FromDatetime(datetime.fromisoformat(letter.time))
    except ValueError:
        pass
    original = {k: v for k, v in letter.headers.items() if not k.startswith("mesh-dlq-")}
    return event_pb2.DeadLetter(
        seq=letter.seq,
        event=event_of(original, letter.data),
        module=letter.module,
        handler=letter.handler,
        reason=letter.reason,
        deliveries=int(letter.deliveries) if letter.deliveries.isdigit() else 0,
        time=time,
    )


class EventsServicer(event_pb2_grpc.EventsServicer):
    """Publishes and replays through the coordinator's own NATS connection."""

    def __init__(self, connection: Callable[[], NatsClient]) -> None:
        self._connection = connection

    async def Publish(self, request, context):
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
            event.id = event.id or uuid.uuid4().hex
            if not event.HasField("time"):
                event.time.GetCurrentTime()
            subject = event_subject(event.type, event.tenant or None)
            client = self._connection()
            if len(event.data) > client.max_payload:
                raise MeshError(
                    "INVALID_EVENT", f"the event's data is {len(event.data)} bytes; NATS takes {client.max_payload}"
                )
            await client.jetstream().publish(subject, event.data, timeout=10, headers=event_headers(event))
            return event_pb2.PublishResponse(id=event.id, subject=subject)

        return await answer(context, publish)

    async def ListDeadLetters(self, request, context):
        letters = await dlq.list_dead_letters(self._connection(), module=request.module or None)
        return event_pb2.ListDeadLettersResponse(dead_letters=[dead_letter_proto(letter) for letter in letters])

    async def ReplayDeadLetter(self, request, context):
        async def replay() -> event_pb2.ReplayDeadLetterResponse:
            try:
                letter = await dlq.replay(self._connection(), request.seq, keep=request.keep)
            except dlq.DeadLetterNotFound as error:
                raise MeshError("INVALID_EVENT", str(error), status=grpc.StatusCode.NOT_FOUND) from None
            return event_pb2.ReplayDeadLetterResponse(dead_letter=dead_letter_proto(letter))

        return await answer(context, replay)
