"""`mesh new NAME`: create a module that runs as it is (the files come from `scaffold`), and
give it its service in the project's docker-compose.yml (`compose_service`), so that the
project stays green: tests/test_compose.py runs every module the modules folder holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from mesh.cli._common import EXIT_OK, EXIT_USAGE, CliError, Commands, console
from mesh.cli.compose_service import COMPOSE_FILE, ComposeShapeError, ServiceExists, add_service, service_block
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
        f"mesh new: created {folder} (manifest, v1 proto and its generated code, module.py, a test, README).",
        markup=False,
    )
    console.print(f"mesh new: {_compose_note(args.modules.parent / COMPOSE_FILE, args.name)}", markup=False)
    console.print("Try it: make test, then make run.", markup=False)
    return EXIT_OK


def _compose_note(compose: Path, name: str) -> str:
    """Add the module's service to the compose file next to the modules folder; what became of it."""
    if not compose.exists():
        return f"no {compose}, so no compose service was added (the mesh itself needs none)"
    try:
        return add_service(compose, name)
    except ServiceExists as error:
        return f"{compose} was left as it is: {error}"
    except ComposeShapeError as error:
        return (
            f"{compose} was left as it is: {error}. To run the module there, add under services:\n"
            f"{service_block(name)}and under secrets: {name}-tls with file: ./secrets/{name}"
        )
    except OSError as error:
        return f"{compose} could not be changed ({error.strerror}); add the module's service by hand"
