"""The dead-letter stream: list, show and replay dead letters (what `mesh dlq` does).

A replay sends the event, with its original headers, to the one consumer that failed it
(`mesh.replay.<consumer>`), not to every subscriber of its type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import nats.js.errors
from nats.aio.client import Client as NatsClient

from mesh.protocol import cloudevents, deadletters
from mesh.protocol.cloudevents import CloudEvent
from mesh.protocol.names import DEAD_LETTER_STREAM, replay_subject


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: the original event and why it was given up on."""

    seq: int
    event: CloudEvent
    """The original event, read leniently: a dead letter may be a message that was never an event."""
    module: str
    handler: str
    consumer: str
    deliveries: str
    reason: str
    time: str
    subject: str
    headers: dict[str, str]
    data: bytes


class DeadLetterNotFound(LookupError):
    """No dead letter has that sequence number."""


def _letter(seq: int, headers: dict[str, str] | None, data: bytes | None) -> DeadLetter:
    headers = dict(headers or {})
    given_up = deadletters.given_up_of(headers)
    return DeadLetter(
        seq=seq,
        event=cloudevents.from_nats(headers, data, strict=False),
        module=given_up.module,
        handler=given_up.handler,
        consumer=given_up.consumer,
        deliveries=given_up.deliveries,
        reason=given_up.reason,
        time=given_up.time,
        subject=given_up.subject,
        headers=headers,
        data=data or b"",
    )


async def list_dead_letters(client: NatsClient, *, module: str | None = None) -> list[DeadLetter]:
    """Every dead letter still in the stream, oldest first (optionally of one module)."""
    js = client.jetstream()
    try:
        info = await js.stream_info(DEAD_LETTER_STREAM)
    except nats.js.errors.NotFoundError:
        return []
    letters: list[DeadLetter] = []
    if not info.state.messages:
        return letters
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await js.get_msg(DEAD_LETTER_STREAM, seq)
        except nats.js.errors.NotFoundError:
            continue  # deleted after a replay
        letter = _letter(seq, message.headers, message.data)
        if module is None or letter.module == module:
            letters.append(letter)
    return letters


async def show(client: NatsClient, seq: int) -> DeadLetter:
    try:
        message = await client.jetstream().get_msg(DEAD_LETTER_STREAM, seq)
    except nats.js.errors.NotFoundError:
        raise DeadLetterNotFound(f"no dead letter {seq} in {DEAD_LETTER_STREAM}; `mesh dlq list` shows them") from None
    return _letter(seq, message.headers, message.data)


async def replay(client: NatsClient, seq: int, *, keep: bool) -> DeadLetter:
    """Deliver dead letter `seq` again to the consumer that failed it; delete it unless `keep`."""
    letter = await show(client, seq)
    if not letter.consumer:
        raise DeadLetterNotFound(f"dead letter {seq} names no consumer to replay to")
    headers = deadletters.replay_headers(letter.headers, seq, uuid.uuid4().hex)
    js = client.jetstream()
    await js.publish(replay_subject(letter.consumer), letter.data, headers=headers)
    if not keep:
        await js.delete_msg(DEAD_LETTER_STREAM, seq)
    return letter
