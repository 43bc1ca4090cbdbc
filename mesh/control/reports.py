"""What `mesh up` says about a module that failed: its error on one line (with the file:line
the module named), then the part of its log that its current process wrote, and where the
rest is.

Only the current process's part of the log counts: the log file keeps every run, and an
earlier run's traceback there would point at a cause that may be fixed already.
"""

from __future__ import annotations

from mesh.control.registry import ModuleRecord


def logs_pointer(name: str) -> str:
    """Where the whole log of a module of this coordinator is read."""
    return f"see `mesh logs {name}`"


def failure_report(record: ModuleRecord, headline: str = "") -> list[str]:
    """The lines that explain why `record` failed.

    Args:
        record: A module that failed.
        headline: The first line; by default the module's error message.

    Returns:
        The headline, then (indented) the end of this process's part of the module's log
        (unless the headline quotes all of it); a local module's report names `mesh logs
        NAME` once.
    """
    first = headline or _message(record)
    tail = [line for line in (record.process.log_tail() if record.process is not None else []) if line.strip()]
    if len(tail) == 1 and tail[0].strip() in first:
        tail = []  # the one line the process logged is quoted already
    lines = [first, *(f"    {line}" for line in tail)]
    pointer = logs_pointer(record.name)
    if record.process is not None and pointer not in first:
        lines.append(f"  {pointer}")
    return lines


def _message(record: ModuleRecord) -> str:
    message = record.error.message if record.error is not None and record.error.message else record.state_reason
    message = message or record.state.name
    return message if record.name in message else f"module {record.name}: {message}"
