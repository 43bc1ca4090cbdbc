"""`mesh new NAME`: create a module that runs as it is (the files come from `scaffold`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mesh.cli._common import EXIT_OK, EXIT_USAGE, CliError, Commands, console
from mesh.cli.scaffold import ScaffoldError, create


def register(commands: Commands) -> None:
    """Add `new` to the `mesh` command."""
    new = commands.add_parser("new", help="create a module that runs as it is: manifest, proto, code, test, README")
    new.add_argument("name", help="the module's kebab-case name, e.g. shipping")
    new.add_argument("--modules", type=Path, default=Path("modules"), help="the modules folder (default modules)")
    new.add_argument("--description", default="", help="one sentence on what the module does")
    new.set_defaults(run=_new)


def _new(args: argparse.Namespace) -> int:
    if not args.modules.is_dir():
        raise CliError(f"{args.modules} is not a folder; pass --modules", EXIT_USAGE)
    try:
        folder = create(args.modules, args.name, args.description or f"The {args.name} module.")
    except ScaffoldError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    console.print(
        f"mesh new: created {folder} (manifest, v1 proto and its generated code, module.py, a test, README).\n"
        f"Try it: make test, then make run (or python -m sdk.run {folder})."
    )
    return EXIT_OK
