"""The CloudEvents NATS binding, binary mode: the one encoder and decoder of the mesh's
wire format.

An event on NATS carries its attributes in `ce-` headers (`ce-id`, `ce-type`, …), its
data as the message body, `content-type`, and the W3C trace context in `traceparent` /
`tracestate`; `Nats-Msg-Id` is the event id so that JetStream stores a retried publish
once. A plain NATS client or any CloudEvents SDK reads it. The SDK's publish and delivery,
the coordinator's Events servicer, its lifecycle events and the dead-letter tools all go
through `to_nats` / `from_nats`, so the format is written down here and nowhere else.

An event cannot lie about itself: an extension never overwrites an attribute, and an
event delivered on `mesh.evt.<tenant>.<type>` must say that tenant and type in its
headers, so that what a handler reads is what the subject (which NATS permissions and
consumers filter on) said.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mesh.protocol.names import event_subject_parts

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
RESERVED_EXTENSIONS = frozenset(
    {
        "id",
        "source",
        "type",
        "specversion",
        "datacontenttype",
        "data",
        *(attribute for _, attribute in _OPTIONAL_HEADERS),
        *(header.removeprefix("ce-") for header in _ATTRIBUTE_HEADERS if header.startswith("ce-")),
    }
)
"""Names an extension may not have: the CloudEvents attributes and the mesh's own, and
every attribute whose `ce-` header the codec writes."""
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
"""A CloudEvents attribute name: lowercase letters and digits, at most 20 of them."""


class NotAnEvent(ValueError):
    """A NATS message that is not a valid event: a required CloudEvents attribute is
    missing, or its attributes disagree with the subject it travels on."""


class DisagreesWithSubject(NotAnEvent):
    """An event whose `ce-tenant` or `ce-type` is not what its subject says: forged or broken."""


class InvalidExtension(ValueError):
    """An extension attribute with a name that is not allowed (an attribute's, or malformed)."""


def check_extensions(extensions: Mapping[str, str]) -> None:
    """Refuse extensions that would overwrite an attribute or are no CloudEvents name.

    Raises:
        InvalidExtension: Naming the first extension refused and why.
    """
    for name in extensions:
        if name in RESERVED_EXTENSIONS:
            raise InvalidExtension(
                f"extension {name!r} collides with the CloudEvents attribute of that name; "
                f"extensions may not be any of {', '.join(sorted(RESERVED_EXTENSIONS))}"
            )
        if not _EXTENSION_NAME.fullmatch(name):
            raise InvalidExtension(
                f"extension {name!r} is not a CloudEvents attribute name: use 1-20 lowercase letters and digits"
            )


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
    """The NATS headers of `event` in binary mode; the body is `event.data`.

    Raises:
        InvalidExtension: An extension would overwrite an attribute or is no valid name.
    """
    check_extensions(event.extensions)
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


def from_nats(
    headers: Mapping[str, str] | None, data: bytes | None, *, strict: bool = True, subject: str | None = None
) -> CloudEvent:
    """The event carried by a NATS message.

    `ce-` headers that are not attributes become extensions, but only under names an
    extension may have, so that an event read here can always be written again.

    Args:
        strict: Raise NotAnEvent when a required attribute is missing, or when the event
            disagrees with `subject`; when False, read what is there (for inspecting dead
            letters, which may be anything).
        subject: The subject the message was delivered on; when it is an event subject
            (`mesh.evt.<tenant>.<type>`), `ce-tenant` and `ce-type` must say the same.
    """
    headers = headers or {}
    if strict and (missing := missing_attributes(headers)):
        raise NotAnEvent(f"not a valid event: missing header(s) {', '.join(missing)}")
    if strict and subject is not None:
        _check_subject(subject, headers)
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
        extensions={
            name: value
            for header, value in headers.items()
            if header.startswith("ce-")
            and (name := header.removeprefix("ce-")) not in RESERVED_EXTENSIONS
            and _EXTENSION_NAME.fullmatch(name)
        },
    )


def _check_subject(subject: str, headers: Mapping[str, str]) -> None:
    """Refuse an event whose tenant or type is not the one of its event subject.

    Raises:
        DisagreesWithSubject: Saying what disagreed.
    """
    parts = event_subject_parts(subject)
    if parts is None:
        return  # no event subject (a system event); a replay is checked against its origin by the SDK
    tenant, event_type = parts
    claimed_tenant, claimed_type = headers.get("ce-tenant", ""), headers.get(TYPE_HEADER, "")
    if claimed_tenant != tenant:
        said = f"tenant {tenant!r}" if tenant else "no tenant"
        raise DisagreesWithSubject(
            f"event disagrees with its subject {subject}: the subject says {said}, ce-tenant says {claimed_tenant!r}"
        )
    if claimed_type != event_type:
        raise DisagreesWithSubject(
            f"event disagrees with its subject {subject}: the subject says type {event_type!r}, "
            f"ce-type says {claimed_type!r}"
        )
