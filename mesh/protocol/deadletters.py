"""The dead-letter envelope: a message given up on is kept intact (headers and body) with
`mesh-dlq-*` headers saying why, by which handler, after how many deliveries. The SDK
writes it; `mesh dlq` and mesh.v1.Events read it and replay it to the one consumer that
failed it. Both sides use this module, so the header names exist once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import MESSAGE_ID_HEADER

PREFIX = "mesh-dlq-"
REPLAY_OF_HEADER = "mesh-replay-of"
"""On a replayed event: the dead letter's sequence number."""
REASON_LIMIT = 4000
"""A reason is cut to this many characters, so that a huge error cannot outgrow the message."""


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
