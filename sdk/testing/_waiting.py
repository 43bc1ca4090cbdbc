"""Waiting for an asynchronous effect in a test: poll a condition until it holds or a
deadline passes (Nameko's `entrypoint_waiter` is the model), so that tests never sleep a
fixed time nor hand-write polling loops."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

WAIT_SECONDS = 60.0
"""The default deadline: an upper bound for something to happen on a busy machine, never
a speed assertion."""


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    within: float = WAIT_SECONDS,
    interval: float = 0.02,
) -> T:
    """Wait until `condition()` returns something truthy, and return it.

    Args:
        condition: A function (plain or async) that looks at the effect; an exception it
            raises counts as "not yet", and the last one is reported at the deadline.
        what: What is awaited, for the failure message ("the order to be quoted").
        within: Seconds before giving up.
        interval: Seconds between two looks.

    Raises:
        AssertionError: The deadline passed; the message names `what` and the last value
            or exception seen.
    """
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = value
        except AssertionError:
            raise
        except Exception as error:  # not there yet (e.g. NOT_FOUND from the module)
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(interval)
