"""One delivery of one message to one handler, whatever the transport: decode (refusing an
event whose tenant or type is not its subject's, or a replay's whose are not those of the
subject its dead letter was first delivered on), filter by tenant, count, run the
handler, classify what happened — into an `Outcome` that the durable path turns into
ack / nak / dead letter and the ephemeral path into nothing.

Keeping this one function means a durable and an ephemeral handler count, log and judge
an event the same way; only what is done with the verdict differs.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from pydantic import ValidationError

from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import TYPE_HEADER, DisagreesWithSubject, NotAnEvent
from mesh.protocol.errors import MeshError
from mesh.protocol.names import event_subject_parts, matches
from sdk._metrics import ModuleMetricsRecorder
from sdk.events._bindings import HandlerBinding
from sdk.events._dead_letters import ORIGIN_SUBJECT_HEADER, is_replay, origin_subject
from sdk.events._event import Drop, Event, Retry, handling
from sdk.events._options import Durable

Accepts = Callable[[Event[Any]], Awaitable[bool]]
"""Whether an event is for this module (its tenant enabled)."""

_log = logging.getLogger("sdk.events")


class Verdict(enum.Enum):
    """What became of one delivery."""

    ACK = "ack"
    """Handled."""
    RETRY = "retry"
    """Deliver again after `Outcome.delay` seconds (durable only)."""
    DEAD_LETTER = "dead_letter"
    """Move to the dead-letter stream for `Outcome.reason` (durable only)."""
    DROP = "drop"
    """The handler raised `sdk.Drop`: done with, not handled."""
    SKIP = "skip"
    """For a tenant the module is not enabled for: done with, not handled."""
    FAILED = "failed"
    """Could not be handled and will not be again (ephemeral only; it is logged)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A verdict with what acting on it needs."""

    verdict: Verdict
    delay: float = 0.0
    reason: str = ""
    error: Exception | None = None
    """The handler's unexpected error, for the trace (not Retry, Drop or a bad payload)."""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What became of one delivery of one event to one handler, for observers (the test
    harness waits on these instead of polling for a handler's effects)."""

    handler: str
    event_id: str
    event_type: str
    attempt: int
    outcome: Outcome

    @property
    def final(self) -> bool:
        """Whether the event is done with for this handler (everything but a retry)."""
        return self.outcome.verdict is not Verdict.RETRY


DeliveryObserver = Callable[[DeliveryReport], None]
"""Told of every delivery after its outcome was acted on; must not raise or block."""

ACK = Outcome(Verdict.ACK)
DROP = Outcome(Verdict.DROP)
SKIP = Outcome(Verdict.SKIP)


class Dispatcher:
    """Delivers messages to the handlers of one module instance."""

    def __init__(self, module: Any, module_name: str, recorder: ModuleMetricsRecorder) -> None:
        self._module = module
        self._module_name = module_name
        self._recorder = recorder

    async def deliver(self, binding: HandlerBinding, message: Msg, attempt: int, accepts: Accepts | None) -> Outcome:
        """Deliver `message` to `binding`'s handler once and say what became of it.

        Args:
            binding: The handler.
            message: The message, from JetStream or core NATS.
            attempt: Which delivery of the message this is (1 for core NATS).
            accepts: The tenant filter; events it refuses are skipped (None: take all).

        Returns:
            The outcome; an `asyncio.CancelledError` of the handler propagates instead.
        """
        if attempt > 1:
            self._recorder.record_event((message.headers or {}).get(TYPE_HEADER, "?"), "redelivered")
        try:
            event = _envelope(binding, message, attempt)
        except NotAnEvent as error:
            return self._unreadable(binding, message, str(error))
        except (ValidationError, DecodeError, ValueError, RecursionError) as error:
            # RecursionError: JSON nested deeper than the parser goes; no retry reads it either
            return self._unreadable(binding, message, f"payload does not validate: {_short(error)}")
        if accepts is not None and not await accepts(event):
            self._recorder.record_event(event.type, "skipped")
            return SKIP
        self._recorder.record_event(event.type, "received")
        try:
            with handling(event):
                await getattr(self._module, binding.method_name)(event if binding.wants_envelope else event.data)
        except Drop as drop:
            _log.info("module %s dropped event %s: %s", self._module_name, event.id, drop)
            self._recorder.record_event(event.type, "dropped")
            return DROP
        except Exception as error:  # not CancelledError (a BaseException): that ends the delivery
            return self._failed(binding, event, error)
        return ACK

    def _unreadable(self, binding: HandlerBinding, message: Msg, reason: str) -> Outcome:
        """A message that is no event, disagrees with its subject or whose payload does not
        validate: no retry helps, and the handler never sees it."""
        if is_replay(message):
            reason = f"replay on {message.subject}: {reason}"
        if binding.durable is not None:
            return Outcome(Verdict.DEAD_LETTER, reason=reason)
        self._recorder.record_event((message.headers or {}).get(TYPE_HEADER, "invalid"), "failed")
        _log.warning("module %s: dropped an invalid ephemeral event: %s", self._module_name, reason)
        return Outcome(Verdict.FAILED, reason=reason)

    def _failed(self, binding: HandlerBinding, event: Event[Any], error: Exception) -> Outcome:
        durable = binding.durable
        if durable is not None and isinstance(error, Retry):
            return _again(durable, event.attempt, f"retry asked: {error}", error.delay)
        self._recorder.record_event(event.type, "failed")
        _log.warning(
            "module %s: handler %s failed on event %s (delivery %d): %s",
            self._module_name,
            binding.method_name,
            event.id,
            event.attempt,
            _short(error),
        )
        reason = f"{type(error).__name__}: {_short(error)}"
        if durable is None:
            return Outcome(Verdict.FAILED, reason=reason, error=error)
        if _refused_as_invalid(error):
            # the handler's input is what is wrong (a cache key too long for NATS, say): no retry helps
            return Outcome(Verdict.DEAD_LETTER, reason=reason, error=error)
        outcome = _again(durable, event.attempt, reason, None)
        return Outcome(outcome.verdict, outcome.delay, outcome.reason, error)


REASON_EXCERPT = 1000
"""The most characters of an error a reason keeps: a validation error may quote a huge input."""


def _short(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= REASON_EXCERPT else f"{text[:REASON_EXCERPT]}… ({len(text)} characters)"


def _refused_as_invalid(error: Exception) -> bool:
    """Whether the handler failed on a MeshError that says its input is invalid (INVALID_ARGUMENT)."""
    return isinstance(error, MeshError) and error.status is grpc.StatusCode.INVALID_ARGUMENT


def _again(durable: Durable, attempt: int, reason: str, delay: float | None) -> Outcome:
    """Retry later (after `delay`, or the backoff when None), or dead-letter after the last delivery."""
    if attempt >= durable.max_deliveries:
        return Outcome(Verdict.DEAD_LETTER, reason=f"{reason} (after {attempt} deliveries)")
    return Outcome(Verdict.RETRY, delay=durable.redelivery_delay(attempt) if delay is None else delay)


def _envelope(binding: HandlerBinding, message: Msg, attempt: int) -> Event[Any]:
    wire = cloudevents.from_nats(message.headers, message.data, subject=_subject_to_agree_with(binding, message))
    extensions = {name: value for name, value in (("tenant", wire.tenant), ("company", wire.company)) if value}
    return Event(
        id=wire.id,
        type=wire.type,
        source=wire.source,
        time=wire.time,
        data=binding.codec.decode(wire.data),
        subject=wire.subject,
        tenant=wire.tenant,
        company=wire.company,
        content_type=wire.datacontenttype,
        attempt=attempt,
        extensions={**extensions, **wire.extensions},
    )


def _subject_to_agree_with(binding: HandlerBinding, message: Msg) -> str:
    """The event subject whose tenant and type `message` must say: its own, or for a replay
    the one its dead letter was first delivered on, which must be one the handler reads.

    Raises:
        NotAnEvent: A replay that names no event subject it came from.
        DisagreesWithSubject: A replay that names one its handler does not subscribe to.
    """
    if not is_replay(message):
        return message.subject
    origin = origin_subject(message)
    if origin is None:
        raise NotAnEvent(
            f"it names no event subject it was first delivered on (header {ORIGIN_SUBJECT_HEADER}, which a dead "
            "letter keeps and `mesh dlq replay` passes on), so it cannot be checked like an event"
        )
    parts = event_subject_parts(origin)
    if parts is None:
        raise DisagreesWithSubject(
            f"it says it was first delivered on {origin!r}, which is no event subject (mesh.evt.<tenant>.<type>)"
        )
    if not matches(binding.options.pattern, parts[1]):
        raise DisagreesWithSubject(
            f"it says it was first delivered on {origin}, but handler {binding.method_name} subscribes to "
            f"{binding.options.pattern!r}, not to {parts[1]!r}"
        )
    return origin
