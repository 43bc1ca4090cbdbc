"""`mesh logs NAME`: one module's log, read from the state folder (no coordinator needed)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mesh.cli._common import EXIT_OK, CliError, Commands, state_root
from mesh.control.statedir import StateDir

FOLLOW_POLL_SECONDS = 0.2


def register(commands: Commands) -> None:
    """Add `logs` to the `mesh` command."""
    logs = commands.add_parser("logs", help="one module's log")
    logs.add_argument("name")
    logs.add_argument("--state-dir", type=Path, help="the mesh's state folder (default .mesh; env MESH_STATE_DIR)")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many of the last lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(run=_logs)


def _logs(args: argparse.Namespace) -> int:
    path = StateDir(state_root(args)).logs / f"{args.name}.log"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.log"))
        raise CliError(f"no log of module '{args.name}' in {path.parent} (logs there: {', '.join(known) or 'none'})")
    with open(path, errors="replace") as log:
        for line in log.readlines()[-args.lines :]:
            sys.stdout.write(line)
        sys.stdout.flush()
        while args.follow:
            line = log.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(FOLLOW_POLL_SECONDS)
    return EXIT_OK
