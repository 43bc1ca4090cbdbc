"""What a dead letter carries: the original message intact (headers and body), plus why it
was given up on, by which handler, after how many deliveries — what `mesh dlq` shows and
what a replay needs to send it back to that one consumer."""

from __future__ import annotations

from nats.aio.msg import Msg

from mesh.protocol import cloudevents, deadletters


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
    given_up = deadletters.GivenUp(
        reason=reason,
        module=module_name,
        handler=handler_name,
        consumer=consumer,
        deliveries=str(attempt),
        subject=message.subject,
        time=cloudevents.now(),
    )
    sequence = message.metadata.sequence.stream if message.metadata else 0
    return deadletters.headers_of(message.headers, given_up, sequence=sequence)
