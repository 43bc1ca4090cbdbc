"""`@on` and its delivery options: how one handler receives its events.

A handler is durable (JetStream, at least once, redelivered and dead-lettered) or
ephemeral (core NATS, at most once); each mode has an options object holding only the
settings that mean something for it, and `@on` checks their values when the class is
defined, so a mistake shows up at import with the handler named, not at the first event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

HANDLER_ATTRIBUTE = "__mesh_handler__"
"""Where `@on` leaves a handler's options on the function (read by `handler_bindings`)."""


@dataclass(frozen=True, kw_only=True)
class Durable:
    """At-least-once delivery through one JetStream consumer per (module, handler), shared by
    the module's replicas (the default).

    Attributes:
        max_deliveries: Deliveries before a failing event is dead-lettered (1: no redelivery).
        retry_delay: The first redelivery delay in seconds; it doubles with every attempt.
        max_retry_delay: The longest redelivery delay in seconds.
        concurrency: How many events of this handler run at once (per process).
        ack_wait: Seconds a delivery may take before the server redelivers it.
    """

    max_deliveries: int = 5
    retry_delay: float = 1.0
    max_retry_delay: float = 60.0
    concurrency: int = 1
    ack_wait: float = 30.0

    def problems(self) -> list[str]:
        """What is wrong with these settings, each with its fix (empty: nothing)."""
        found = []
        if self.max_deliveries < 1:
            found.append(f"max_deliveries is {self.max_deliveries}; use at least 1 (1: never redeliver)")
        if self.retry_delay < 0 or self.max_retry_delay < 0:
            found.append(
                f"retry_delay {self.retry_delay} / max_retry_delay {self.max_retry_delay}: delays cannot be "
                "negative; use seconds >= 0"
            )
        elif self.max_retry_delay < self.retry_delay:
            found.append(
                f"max_retry_delay {self.max_retry_delay} is below retry_delay {self.retry_delay}; "
                "raise max_retry_delay or lower retry_delay"
            )
        found.extend(_concurrency_problems(self.concurrency))
        if self.ack_wait <= 0:
            found.append(f"ack_wait is {self.ack_wait}; use the seconds a delivery may take (> 0)")
        return found

    def redelivery_delay(self, attempt: int) -> float:
        """The delay before delivery `attempt + 1` of a failed event: exponential, capped."""
        return min(self.retry_delay * 2.0 ** (attempt - 1), self.max_retry_delay)


@dataclass(frozen=True, kw_only=True)
class Ephemeral:
    """At-most-once delivery on core NATS, for high-rate signals: no redelivery, no dead
    letters (so no settings for them), nothing kept while the module is down.

    Attributes:
        concurrency: How many events of this handler run at once (per process).
    """

    concurrency: int = 1

    def problems(self) -> list[str]:
        """What is wrong with these settings, each with its fix (empty: nothing)."""
        return _concurrency_problems(self.concurrency)


Delivery = Durable | Ephemeral


@dataclass(frozen=True)
class HandlerOptions:
    """How one handler receives its events (set by `@on`)."""

    pattern: str
    delivery: Delivery


def on(pattern: str, *, delivery: Delivery | None = None) -> Callable[[T], T]:
    """Mark a module method as the handler of events of type `pattern` (`order.created`,
    `order.*`, `order.>`, `>`). The method's parameter type decides the payload: a pydantic
    model (JSON), a protobuf message, `bytes`, or `sdk.Event[Model]` for the envelope too.

    The decorator only registers: the method is returned unchanged, so a unit test can
    call it directly.

    Args:
        pattern: The event type or pattern; it must be listed under [events] subscribes.
        delivery: `sdk.Durable(...)` (the default: at least once, redelivered, dead-lettered)
            or `sdk.Ephemeral(...)` (core NATS, at most once).

    Returns:
        The decorator.

    Raises:
        TypeError: `delivery` is not a Durable or Ephemeral instance.
        ValueError: a setting means nothing (e.g. max_deliveries 0, a negative delay).
    """
    chosen = Durable() if delivery is None else delivery

    def register(method: T) -> T:
        where = f"@sdk.on({pattern!r}) on {getattr(method, '__qualname__', method)!r}"
        if not isinstance(chosen, Durable | Ephemeral):
            raise TypeError(
                f"{where}: delivery is {chosen!r}; pass an instance, delivery=sdk.Durable(...) or "
                "delivery=sdk.Ephemeral(...)"
            )
        if problems := chosen.problems():
            raise ValueError(f"{where}: {'; '.join(problems)}")
        setattr(method, HANDLER_ATTRIBUTE, HandlerOptions(pattern, chosen))
        return method

    return register


def _concurrency_problems(concurrency: int) -> list[str]:
    if concurrency < 1:
        return [f"concurrency is {concurrency}; use at least 1 (handlers running at once per process)"]
    return []
