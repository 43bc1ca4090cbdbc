"""What a dead letter carries: the original message intact (headers and body), plus why it
was given up on, by which handler, after how many deliveries — what `mesh dlq` shows and
what a replay needs to send it back to that one consumer.

A replay arrives on `mesh.replay.<consumer>`, a subject that names no tenant and no type,
so the dead letter also keeps the event subject the message was first delivered on, among
the headers a replay restores: the replay is then checked against it as the original was
against its own subject, and a replay that cannot say where it came from is not handled.
"""

from __future__ import annotations

from nats.aio.msg import Msg

from mesh.protocol import cloudevents, deadletters
from mesh.protocol.names import REPLAY_SUBJECT_PREFIX

ORIGIN_SUBJECT_HEADER = "mesh-origin-subject"
"""The event subject (`mesh.evt.<tenant>.<type>`) a dead letter was first delivered on. Not a
`mesh-dlq-*` header, so that a replay carries it; only a replay's is ever read."""


def is_replay(message: Msg) -> bool:
    """Whether `message` is a replayed dead letter (on `mesh.replay.<consumer>`)."""
    return message.subject.startswith(f"{REPLAY_SUBJECT_PREFIX}.")


def origin_subject(message: Msg) -> str | None:
    """The event subject `message` was first delivered on: its own subject, or for a replay
    the one it carries (None when it carries none)."""
    if is_replay(message):
        return (message.headers or {}).get(ORIGIN_SUBJECT_HEADER)
    return message.subject


def dead_letter_headers(
    message: Msg, module_name: str, handler_name: str, consumer: str, reason: str, attempt: int
) -> dict[str, str]:
    """The headers of `message`'s dead letter.

    Args:
        message: The message given up on.
        module_name: The module whose handler gave up.
        handler_name: The handler method's name.
        consumer: The handler's durable consumer (where a replay goes).
        reason: Why it was given up on.
        attempt: How many deliveries it had.

    Returns:
        The original headers (but its message id, and with the subject it was first
        delivered on) and the `mesh-dlq-*` ones.
    """
    given_up = deadletters.GivenUp(
        reason=reason,
        module=module_name,
        handler=handler_name,
        consumer=consumer,
        deliveries=str(attempt),
        subject=message.subject,
        time=cloudevents.now(),
    )
    original = dict(message.headers or {})
    origin = origin_subject(message)
    if origin is not None:  # what the publisher wrote there, unless the message is a replay, is replaced
        original[ORIGIN_SUBJECT_HEADER] = origin
    sequence = message.metadata.sequence.stream if message.metadata else 0
    return deadletters.headers_of(original, given_up, sequence=sequence)
