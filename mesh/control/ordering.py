"""Run one action per module in dependency order, as concurrently as the order allows.

A module's action begins the moment everything it waits for has finished, not level by
level behind the slowest module of a level. Used to bring modules up (waiting for
dependencies) and to stop them (waiting for dependents).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field


@dataclass
class OrderedRun:
    """How an ordered run went."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)  # name -> why
    aborted_by: str | None = None


async def run_in_order(
    names: Collection[str],
    waits_for: Mapping[str, Collection[str]],
    action: Callable[[str], Awaitable[None]],
    *,
    requires: Mapping[str, Collection[str]] | None = None,
    abort_on_failure_of: Collection[str] = (),
) -> OrderedRun:
    """Run `action(name)` for every name once all of `waits_for[name]` have finished.

    Args:
        names: The modules to act on.
        waits_for: For each name, the names whose action must finish first (either way).
            Names outside `names` are ignored.
        action: The work; an exception marks the name failed.
        requires: For each name, the names whose action must have *succeeded*; otherwise
            the name is not run (and recorded in `not_run`).
        abort_on_failure_of: Names whose failure cancels everything still running or waiting.
    """
    wanted = set(names)
    finished = {name: asyncio.Event() for name in wanted}
    result = OrderedRun()
    aborting = set(abort_on_failure_of)

    async def one(name: str) -> None:
        try:
            for other in waits_for.get(name, ()):
                if other in wanted:
                    await finished[other].wait()
            missing = [d for d in (requires or {}).get(name, ()) if d in wanted and d not in result.succeeded]
            if missing:
                result.not_run[name] = f"requires '{missing[0]}', which did not come up"
                return
            try:
                await action(name)
            except Exception as error:
                result.failed[name] = error
                if name in aborting and result.aborted_by is None:
                    result.aborted_by = name
                return
            result.succeeded.append(name)
        finally:
            finished[name].set()

    tasks = {asyncio.create_task(one(name), name=f"ordered:{name}") for name in sorted(wanted)}
    pending = tasks
    try:
        while pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if result.aborted_by is not None:
                await _cancel(pending)
                for name in sorted(wanted - set(result.succeeded) - set(result.failed) - set(result.not_run)):
                    result.not_run[name] = f"start-up was aborted because '{result.aborted_by}' failed"
                break
    except asyncio.CancelledError:
        # Cancelled itself (Ctrl-C during start-up): no action may go on behind the caller's back.
        await _cancel(pending)
        raise
    return result


async def _cancel(tasks: Collection[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
