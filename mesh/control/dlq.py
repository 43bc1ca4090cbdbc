"""The dead-letter stream: list, show and replay dead letters (what `mesh dlq` does).

A replay sends the event, with its original headers, to the one consumer that failed it
(`mesh.replay.<consumer>`), not to every subscriber of its type.

A dead letter may be any bytes at all (a message that was never an event), so what is shown
of it is bounded: `shown_data` parses JSON only when it is small and shallow, and shows a
text excerpt of anything else; `shown_headers` cuts long header values.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import api

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

    def shown_data(self) -> Any:
        """The body as `mesh dlq` shows it (bounded: see `shown_data`)."""
        return shown_data(self.data)

    def shown_headers(self) -> dict[str, str]:
        """The headers as `mesh dlq show` shows them (bounded: see `shown_headers`)."""
        return shown_headers(self.headers)


SHOWN_BYTES = 4096
"""The most of a dead letter's body that is shown (the rest is counted, not printed)."""
SHOWN_DEPTH = 32
"""JSON nested deeper than this is shown as text: printing it again must not recurse without end."""
SHOWN_HEADER_CHARACTERS = 500
"""The most of one header value that is shown."""


def shown_data(data: bytes) -> Any:
    """What to show of a dead letter's body: small, shallow JSON parsed; anything else as an
    excerpt of its text (undecodable bytes replaced), with its full size when cut."""
    if len(data) <= SHOWN_BYTES and _depth(data) <= SHOWN_DEPTH:
        try:
            return json.loads(data)
        except ValueError:
            pass
    return _cut(data[:SHOWN_BYTES].decode(errors="replace"), SHOWN_BYTES, "bytes", len(data))


def shown_headers(headers: dict[str, str]) -> dict[str, str]:
    """A dead letter's headers with each value cut to SHOWN_HEADER_CHARACTERS."""
    return {key: _cut(value, SHOWN_HEADER_CHARACTERS, "characters") for key, value in headers.items()}


def _cut(text: str, limit: int, unit: str, size: int | None = None) -> str:
    size = len(text) if size is None else size
    return text if size <= limit else f"{text[:limit]}… ({size} {unit} in all)"


def _depth(data: bytes) -> int:
    """The deepest bracket nesting of `data` read as JSON (brackets in strings count too: an
    overestimate only makes a body shown as text)."""
    depth = deepest = 0
    for byte in data:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


class DeadLetterNotFound(LookupError):
    """No dead letter has that sequence number."""


def _headers_of(message: api.RawStreamMsg) -> dict[str, str] | None:
    """A stored message's headers, read from their bytes: nats-py reads those of `get_msg` with
    the e-mail parser, which turns a value with non-ASCII bytes into an `email.header.Header`
    (its text lost) and may fold long ones."""
    if not isinstance(message.hdrs, str | bytes):
        return message.headers
    try:
        raw = base64.b64decode(message.hdrs)
    except (binascii.Error, ValueError):
        return message.headers
    headers: dict[str, str] = {}
    for line in raw.split(b"\r\n")[1:]:  # the first is NATS/1.0, with a status if any
        key, colon, value = line.partition(b":")
        if colon and key.strip():
            headers[key.strip().decode(errors="replace")] = value.strip().decode(errors="replace")
    return headers


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
        letter = _letter(seq, _headers_of(message), message.data)
        if module is None or letter.module == module:
            letters.append(letter)
    return letters


async def show(client: NatsClient, seq: int) -> DeadLetter:
    try:
        message = await client.jetstream().get_msg(DEAD_LETTER_STREAM, seq)
    except nats.js.errors.NotFoundError:
        raise DeadLetterNotFound(f"no dead letter {seq} in {DEAD_LETTER_STREAM}; `mesh dlq list` shows them") from None
    return _letter(seq, _headers_of(message), message.data)


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
