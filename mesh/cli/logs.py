"""`mesh logs [NAME] [-f]`: module logs, read from the state folder (no coordinator needed).

With a name, that module's log as it is; without one, every module's log with a `name | `
prefix on each line, as `docker compose logs` does. `-f` keeps printing new lines (of modules
that start later too) until Ctrl-C, which ends it with exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mesh.cli._common import EXIT_OK, EXIT_USAGE, CliError, Commands, did_you_mean, state_root
from mesh.control.statedir import StateDir

FOLLOW_POLL_SECONDS = 0.2
PREFIX_COLOURS = (36, 33, 32, 35, 34, 31)
"""ANSI colours of the name prefixes, in turn (cyan, yellow, green, magenta, blue, red)."""


def register(commands: Commands) -> None:
    """Add `logs` to the `mesh` command."""
    logs = commands.add_parser(
        "logs",
        help="module logs: one module's, or every module's with name prefixes",
        description="Print a module's log, or every module's log with a `name | ` prefix on each line; "
        "-f keeps printing new lines until Ctrl-C.",
    )
    logs.add_argument("name", nargs="?", metavar="MODULE", help="the module (default: every module)")
    logs.add_argument("--state-dir", type=Path, help="the mesh's state folder (default .mesh; env MESH_STATE_DIR)")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many of the last lines of each (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    logs.add_argument("--no-color", action="store_true", help="no colours in the name prefixes (env NO_COLOR)")
    logs.set_defaults(run=_logs)


@dataclass
class _Log:
    """One module's log file, read from where the last read stopped."""

    name: str
    path: Path
    file: TextIO | None = None
    partial: str = ""
    """A last line still being written (no newline yet): printed once it is whole."""


def _logs(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise CliError(f"--lines is {args.lines}; expected 0 or more", EXIT_USAGE)
    folder = StateDir(state_root(args)).logs
    logs = _chosen(folder, args.name)
    colour = sys.stdout.isatty() and not args.no_color and not os.environ.get("NO_COLOR")
    prefixes = _Prefixes([log.name for log in logs] if args.name is None else [], colour=colour)
    try:
        for log in logs:
            log.file = _open(log.path)
            for line in _tail(log, args.lines):
                prefixes.write(log.name, line)
            if log.partial and not args.follow:
                prefixes.write(log.name, log.partial + "\n")
        sys.stdout.flush()
        while args.follow:
            if args.name is None:
                _add_new_logs(folder, logs, prefixes)
            if not _print_new_lines(logs, prefixes):
                time.sleep(FOLLOW_POLL_SECONDS)
    except KeyboardInterrupt:
        return EXIT_OK  # the way to end `-f`, not a failure
    finally:
        for log in logs:
            if log.file is not None:
                log.file.close()
    return EXIT_OK


def _chosen(folder: Path, name: str | None) -> list[_Log]:
    """The logs to print: `name`'s, or every module's.

    Raises:
        CliError: there is no such log (exit 2), with the near miss among those there are.
    """
    known = sorted(path.stem for path in folder.glob("*.log")) if folder.is_dir() else []
    if name is None:
        if not known:
            raise CliError(
                f"no module logs in {folder}: has a mesh run with this state folder? (--state-dir, env MESH_STATE_DIR)",
                EXIT_USAGE,
            )
        return [_Log(stem, folder / f"{stem}.log") for stem in known]
    if name not in known:
        raise CliError(
            f"no log of module {name!r} in {folder} (logs there: {', '.join(known) or 'none'})"
            f"{did_you_mean(name, known)}",
            EXIT_USAGE,
        )
    return [_Log(name, folder / f"{name}.log")]


def _open(path: Path) -> TextIO:
    # Kept open to follow the file; `_logs` closes it.
    return open(path, errors="replace")


def _add_new_logs(folder: Path, logs: list[_Log], prefixes: _Prefixes) -> None:
    """Follow the logs of modules that started since (read from their beginning)."""
    known = {log.name for log in logs}
    for path in sorted(folder.glob("*.log")):
        if path.stem not in known:
            logs.append(_Log(path.stem, path, _open(path)))
            prefixes.add(path.stem)


def _tail(log: _Log, count: int) -> list[str]:
    assert log.file is not None
    last: deque[str] = deque(maxlen=count)
    for line in log.file:
        if line.endswith("\n"):
            last.append(line)
        else:
            log.partial = line
    return list(last)


def _print_new_lines(logs: list[_Log], prefixes: _Prefixes) -> bool:
    """Print the lines written since the last look; whether there were any."""
    printed = False
    for log in logs:
        assert log.file is not None
        for chunk in iter(log.file.readline, ""):
            text = log.partial + chunk
            if not text.endswith("\n"):
                log.partial = text
                break
            log.partial = ""
            prefixes.write(log.name, text)
            printed = True
    if printed:
        sys.stdout.flush()
    return printed


class _Prefixes:
    """Writes lines after their module's name, padded to the longest name (`docker compose` style);
    with no names, the lines as they are."""

    def __init__(self, names: list[str], *, colour: bool) -> None:
        self._with_names = bool(names)
        self._colour = colour
        self._colours: dict[str, int] = {}
        self._width = 0
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        self._width = max(self._width, len(name))
        self._colours.setdefault(name, PREFIX_COLOURS[len(self._colours) % len(PREFIX_COLOURS)])

    def write(self, name: str, line: str) -> None:
        if not self._with_names:
            sys.stdout.write(line)
            return
        prefix = f"{name:<{self._width}} | "
        if self._colour:
            prefix = f"\033[{self._colours[name]}m{prefix}\033[0m"
        sys.stdout.write(prefix + line)
