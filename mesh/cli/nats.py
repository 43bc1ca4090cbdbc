"""`mesh nats permissions`: what each module's NATS user must be allowed, for an operator who
runs the NATS servers (NATS_URL) and provisions the users: from the running mesh (exactly
what the coordinator admitted), or else from the modules folder (manifests and handlers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mesh.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    config_options,
    console,
    did_you_mean,
    discovered_modules,
    error_console,
    state_root,
)
from mesh.cli.shapes import print_json
from mesh.control.statedir import StateDir
from mesh.protocol.nats_access import ModuleGrant


def register(commands: Commands) -> None:
    """Add `nats` to the `mesh` command."""
    nats = commands.add_parser("nats", help="NATS access: the permissions of each module's NATS user")
    actions = nats.add_subparsers(dest="action", required=True, metavar="ACTION")
    permissions = actions.add_parser(
        "permissions",
        help="print each module's NATS permissions (nats-server 'permissions' blocks, JSON)",
        description="Print what each module's NATS user may publish and subscribe to: from the mesh running "
        "with the state folder when there is one (exact), else from the modules folder.",
    )
    config_options(permissions)
    permissions.add_argument("--module", help="only this module")
    permissions.add_argument("--json", action="store_true", help="the same JSON (accepted as on every read command)")
    permissions.set_defaults(run=_permissions)

    users = actions.add_parser(
        "users",
        help="write a NATS server configuration with a user per module, and the logins for the coordinator",
        description="For NATS servers you run yourself (NATS_URL): write DIR/server/nats-server.conf (users with "
        "each module's permissions, fresh passwords; with --route, authenticated cluster routes) for every "
        "nats-server (-c), and DIR/logins/ (one login per user) for the coordinator (MESH_NATS_CREDENTIALS).",
    )
    config_options(users)
    users.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write (files are replaced)")
    users.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a cluster route of every server (repeat for each server of the cluster, e.g. nats-1:6222)",
    )
    users.set_defaults(run=_users)


def _planned(args: argparse.Namespace) -> dict[str, ModuleGrant]:
    """The grants of the modules folder, its warnings printed."""
    # Loading module code (the SDK) is needed by these commands alone; imported here, it
    # does not slow down the others.
    from mesh.control.nats_plan import planned_grants

    discovered = discovered_modules(args)
    grants, warnings = planned_grants(discovered)
    for warning in warnings:
        error_console.print(f"mesh nats {args.action}: {warning}", markup=False)
    return grants


def _users(args: argparse.Namespace) -> int:
    from mesh.control.nats_plan import write_users

    for route in args.route:
        host, _, port = route.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(f"--route {route!r} is not HOST:PORT, e.g. nats-1:6222", EXIT_USAGE)
    grants = _planned(args)
    try:
        written = write_users(args.out, grants, args.route)
    except OSError as error:
        raise CliError(f"cannot write to {args.out}: {error.strerror or error}", EXIT_USAGE) from None
    console.print(
        f"mesh nats users: wrote {written[0]} (start every nats-server with -c on it) and {len(written) - 1} logins "
        f"in {written[1].parent} (give the coordinator MESH_NATS_CREDENTIALS={written[1].parent})",
        markup=False,
    )
    return EXIT_OK


def _permissions(args: argparse.Namespace) -> int:
    running = StateDir(state_root(args))
    if running.read_info() is not None and (running.nats_access / "permissions.json").exists():
        blocks: dict[str, Any] = json.loads((running.nats_access / "permissions.json").read_text())
    else:
        blocks = {name: grant.permissions() for name, grant in _planned(args).items()}
    if args.module is not None:
        if args.module not in blocks:
            raise CliError(
                f"no module {args.module!r}; known: {', '.join(sorted(blocks)) or 'none'}"
                f"{did_you_mean(args.module, blocks)}",
                EXIT_USAGE,
            )
        blocks = {args.module: blocks[args.module]}
    print_json(dict(sorted(blocks.items())))
    return EXIT_OK
