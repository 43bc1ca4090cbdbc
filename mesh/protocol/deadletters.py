"""The dead-letter envelope: a message given up on is kept intact (headers and body) with
`mesh-dlq-*` headers saying why, by which handler, after how many deliveries. The SDK
writes it; `mesh dlq` and mesh.v1.Events read it and replay it to the one consumer that
failed it. Both sides use this module, so the header names exist once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import MESSAGE_ID_HEADER
from mesh.protocol.nats_limits import MAX_STORED_HEADER_BYTES, header_size, message_size

PREFIX = "mesh-dlq-"
REPLAY_OF_HEADER = "mesh-replay-of"
"""On a replayed event: the dead letter's sequence number."""
REASON_LIMIT = 4000
"""A reason is cut to this many characters, so that a huge error cannot outgrow the message."""
TRUNCATED_HEADER = f"{PREFIX}truncated"
"""On a dead letter too large to keep whole: the size in bytes of the body it was cut from."""
HEADER_VALUE_LIMIT = 1000
"""An original header value is cut to this many characters when the dead letter must shrink."""


@dataclass(frozen=True)
class GivenUp:
    """Why and where a message was given up on."""

    reason: str
    module: str
    handler: str
    consumer: str
    """The handler's durable consumer: where a replay goes."""
    deliveries: str
    subject: str
    """The subject the message was delivered on."""
    time: str


def headers_of(original: Mapping[str, str] | None, given_up: GivenUp, *, sequence: int) -> dict[str, str]:
    """The dead letter's headers: the original ones (but the message id) and the `mesh-dlq-*` ones.

    Args:
        sequence: The original's stream sequence, so that dead-lettering it again (a retried
            publish) stores one dead letter.
    """
    return {
        **{k: v for k, v in (original or {}).items() if k != MESSAGE_ID_HEADER},
        f"{PREFIX}reason": given_up.reason[:REASON_LIMIT],
        f"{PREFIX}module": given_up.module,
        f"{PREFIX}handler": given_up.handler,
        f"{PREFIX}consumer": given_up.consumer,
        f"{PREFIX}deliveries": given_up.deliveries,
        f"{PREFIX}subject": given_up.subject,
        f"{PREFIX}time": given_up.time or cloudevents.now(),
        MESSAGE_ID_HEADER: f"dlq-{given_up.consumer}-{sequence}",
    }


def given_up_of(headers: Mapping[str, str]) -> GivenUp:
    """What a dead letter's headers say of why it was given up on ("" where they say nothing)."""
    get = headers.get
    return GivenUp(
        reason=get(f"{PREFIX}reason", ""),
        module=get(f"{PREFIX}module", ""),
        handler=get(f"{PREFIX}handler", ""),
        consumer=get(f"{PREFIX}consumer", ""),
        deliveries=get(f"{PREFIX}deliveries", ""),
        subject=get(f"{PREFIX}subject", ""),
        time=get(f"{PREFIX}time", ""),
    )


def original_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers the message had before it was dead-lettered (without its message id)."""
    return {k: v for k, v in headers.items() if not k.startswith(PREFIX) and k != MESSAGE_ID_HEADER}


def replay_headers(headers: Mapping[str, str], sequence: int, replay_id: str) -> dict[str, str]:
    """The headers of a replay of dead letter `sequence`: the original ones, marked as a replay."""
    return {
        **original_headers(headers),
        REPLAY_OF_HEADER: str(sequence),
        MESSAGE_ID_HEADER: f"replay-{sequence}-{replay_id}",
    }


def bounded(body: bytes, headers: Mapping[str, str], max_payload: int) -> tuple[bytes, dict[str, str]]:
    """A dead letter that NATS takes: a message it took may outgrow `max_payload` (a publish
    over it closes the connection) or JetStream's 64 KiB of headers by the `mesh-dlq-*`
    headers. Then its original header values are cut (or, if still too many, left out), then
    its body, and `mesh-dlq-truncated` says the body's size.

    Args:
        body: The original body.
        headers: The dead letter's headers (`headers_of`).
        max_payload: The server's limit for headers and body together.

    Returns:
        The body and headers to store: unchanged when they fit.
    """
    if message_size(body, headers) <= max_payload and header_size(headers) <= MAX_STORED_HEADER_BYTES:
        return body, dict(headers)

    def own(key: str) -> bool:
        return key.startswith(PREFIX) or key == MESSAGE_ID_HEADER

    kept = {key: value if own(key) else value[:HEADER_VALUE_LIMIT] for key, value in headers.items()}
    kept[TRUNCATED_HEADER] = str(len(body))
    if header_size(kept) > MAX_STORED_HEADER_BYTES or header_size(kept) > max_payload:
        kept = {key: value for key, value in kept.items() if own(key)}
    return body[: max(max_payload - header_size(kept), 0)], kept
