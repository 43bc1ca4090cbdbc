"""The CloudEvents NATS binding, binary mode: the one encoder and decoder of the mesh's
wire format.

An event on NATS carries its attributes in `ce-` headers (`ce-id`, `ce-type`, …), its
data as the message body, `content-type`, and the W3C trace context in `traceparent` /
`tracestate`; `Nats-Msg-Id` is the event id so that JetStream stores a retried publish
once. A plain NATS client or any CloudEvents SDK reads it. The SDK's publish and delivery,
the coordinator's Events servicer, its lifecycle events and the dead-letter tools all go
through `to_nats` / `from_nats`, so the format is written down here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

SPEC_VERSION = "1.0"
DEFAULT_CONTENT_TYPE = "application/json"
MESSAGE_ID_HEADER = "Nats-Msg-Id"
ID_HEADER = "ce-id"
TYPE_HEADER = "ce-type"
SOURCE_HEADER = "ce-source"
"""Attribute headers that code outside the codec reads before (or instead of) decoding a
message that may not be an event at all: for span and metric labels."""
REQUIRED_HEADERS = (ID_HEADER, TYPE_HEADER, SOURCE_HEADER, "ce-specversion")
"""The attributes without which a message is not a CloudEvent."""

# Optional attributes with a field of their own (the rest of `ce-*` are extensions).
_OPTIONAL_HEADERS = (
    ("ce-time", "time"),
    ("ce-subject", "subject"),
    ("ce-tenant", "tenant"),
    ("ce-company", "company"),
    ("ce-dataschema", "dataschema"),
    ("traceparent", "traceparent"),
    ("tracestate", "tracestate"),
)
_ATTRIBUTE_HEADERS = frozenset({*REQUIRED_HEADERS, *(h for h, _ in _OPTIONAL_HEADERS), "content-type"})


class NotAnEvent(ValueError):
    """A NATS message that lacks a required CloudEvents attribute."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One event as it travels: the CloudEvents attributes and the encoded data.

    `tenant` and `company` are the mesh's extension attributes; `extensions` holds any
    other `ce-` attribute, by name without the prefix.
    """

    id: str
    type: str
    source: str
    data: bytes = b""
    time: str = ""
    subject: str = ""
    tenant: str = ""
    company: str = ""
    datacontenttype: str = ""
    dataschema: str = ""
    specversion: str = SPEC_VERSION
    traceparent: str = ""
    tracestate: str = ""
    extensions: Mapping[str, str] = field(default_factory=dict)


def now() -> str:
    """The `time` attribute of an event created now (RFC 3339, UTC)."""
    return datetime.now(UTC).isoformat()


def to_nats(event: CloudEvent) -> dict[str, str]:
    """The NATS headers of `event` in binary mode; the body is `event.data`."""
    headers = {
        "ce-specversion": event.specversion or SPEC_VERSION,
        "ce-id": event.id,
        "ce-source": event.source,
        "ce-type": event.type,
        "content-type": event.datacontenttype or DEFAULT_CONTENT_TYPE,
        MESSAGE_ID_HEADER: event.id,
    }
    for header, attribute in _OPTIONAL_HEADERS:
        value = getattr(event, attribute)
        if value:
            headers[header] = value
    for name, value in event.extensions.items():
        headers[f"ce-{name}"] = value
    return headers


def missing_attributes(headers: Mapping[str, str] | None) -> list[str]:
    """The required attribute headers that `headers` lacks (empty: it is an event)."""
    headers = headers or {}
    return [name for name in REQUIRED_HEADERS if not headers.get(name)]


def from_nats(headers: Mapping[str, str] | None, data: bytes | None, *, strict: bool = True) -> CloudEvent:
    """The event carried by a NATS message.

    Args:
        strict: Raise NotAnEvent when a required attribute is missing; when False, read
            what is there (for inspecting dead letters, which may be anything).
    """
    headers = headers or {}
    if strict and (missing := missing_attributes(headers)):
        raise NotAnEvent(f"not a valid event: missing header(s) {', '.join(missing)}")
    get = headers.get
    return CloudEvent(
        id=get("ce-id", ""),
        type=get("ce-type", ""),
        source=get("ce-source", ""),
        data=data or b"",
        time=get("ce-time", ""),
        subject=get("ce-subject", ""),
        tenant=get("ce-tenant", ""),
        company=get("ce-company", ""),
        datacontenttype=get("content-type", ""),
        dataschema=get("ce-dataschema", ""),
        specversion=get("ce-specversion", ""),
        traceparent=get("traceparent", ""),
        tracestate=get("tracestate", ""),
        extensions={k[3:]: v for k, v in headers.items() if k.startswith("ce-") and k not in _ATTRIBUTE_HEADERS},
    )
