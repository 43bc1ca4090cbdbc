"""What a handler sees and raises: the `Event` envelope, `current_event()`, and the
`Retry` / `Drop` exceptions that steer delivery."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_current_event: contextvars.ContextVar[Event[Any] | None] = contextvars.ContextVar("mesh_event", default=None)


@dataclass(frozen=True)
class Event(Generic[T]):
    """An event as a handler sees it: the CloudEvents attributes and the typed payload."""

    id: str
    type: str
    source: str
    time: str
    data: T
    subject: str = ""
    tenant: str = ""
    company: str = ""
    content_type: str = ""
    attempt: int = 1
    extensions: Mapping[str, str] = field(default_factory=dict)


class Retry(Exception):
    """Raise in a handler to have the event delivered again later (it counts as a delivery)."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "the handler asked to retry")
        self.delay = delay


class Drop(Exception):
    """Raise in a handler to acknowledge the event without handling it (counted as dropped)."""


def current_event() -> Event[Any] | None:
    """The event being handled by the current task, or None outside a handler."""
    return _current_event.get()


class handling:  # lower case: used as a function, `with handling(event):`
    """Make `event` the current event while a handler runs, so that code it calls (a
    publish of a follow-up event, a log line) can read the tenant without threading it through.

    A class rather than a `contextlib.contextmanager` generator, which costs about three
    times as much; this runs on every delivery."""

    __slots__ = ("_event", "_token")

    def __init__(self, event: Event[Any]) -> None:
        self._event = event

    def __enter__(self) -> None:
        self._token = _current_event.set(self._event)

    def __exit__(self, *exc_info: object) -> None:
        _current_event.reset(self._token)
