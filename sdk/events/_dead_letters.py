"""What a dead letter carries: the original message intact (headers and body), plus why it
was given up on, by which handler, after how many deliveries — what `mesh dlq` shows and
what a replay needs to send it back to that one consumer."""

from __future__ import annotations

from nats.aio.msg import Msg

from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import MESSAGE_ID_HEADER

REASON_LIMIT = 4000
"""A reason is cut to this many characters, so that a huge error cannot outgrow the message."""


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
        The original headers (but its message id) and the `mesh-dlq-*` ones.
    """
    sequence = message.metadata.sequence.stream if message.metadata else 0
    return {
        **{k: v for k, v in (message.headers or {}).items() if k != MESSAGE_ID_HEADER},
        "mesh-dlq-reason": reason[:REASON_LIMIT],
        "mesh-dlq-module": module_name,
        "mesh-dlq-handler": handler_name,
        "mesh-dlq-consumer": consumer,
        "mesh-dlq-deliveries": str(attempt),
        "mesh-dlq-subject": message.subject,
        "mesh-dlq-time": cloudevents.now(),
        # one dead letter per stored message, even when dead-lettering is retried
        MESSAGE_ID_HEADER: f"dlq-{consumer}-{sequence}",
    }
