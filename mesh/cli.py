"""The `mesh` command line.

The coordinator (discovery, graph validation, spawning, sequencing, supervision) is not
built yet, so `mesh up` says so plainly and exits non-zero instead of pretending; what
works today is serving one module with `python -m sdk.run modules/<name>`.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

EXIT_NOT_AVAILABLE = 3


def main(argv: list[str] | None = None) -> int:
    """Run the `mesh` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="mesh", description="Module Mesh: run and inspect a mesh of modules.")
    parser.add_argument("--version", action="version", version=f"mesh {metadata.version('module-mesh')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    up = commands.add_parser("up", help="run the mesh of the modules folder until interrupted")
    up.add_argument("--modules", default="modules", help="the modules folder (default: modules)")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    print(
        "mesh up: there is nothing to run yet: the coordinator is not built in this version.\n"
        f"To serve one module of {args.modules}/ on its own: .venv/bin/python -m sdk.run {args.modules}/greeter",
        file=sys.stderr,
    )
    return EXIT_NOT_AVAILABLE


if __name__ == "__main__":
    raise SystemExit(main())
