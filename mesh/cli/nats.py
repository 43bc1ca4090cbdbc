"""`mesh nats permissions`: what each module's NATS user must be allowed, for an operator who
runs the NATS servers (NATS_URL) and provisions the users: from the running mesh (exactly
what the coordinator admitted), or else from the modules folder (manifests and handlers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mesh.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    config_options,
    console,
    error_console,
    load_mesh_config,
    state_root,
)
from mesh.control.discovery import DiscoveryError, discover
from mesh.control.statedir import StateDir


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
    permissions.set_defaults(run=_permissions)


def _permissions(args: argparse.Namespace) -> int:
    # Loading module code (the SDK) is needed by this command alone; imported here, it does
    # not slow down the others.
    from mesh.control.nats_plan import planned_grants

    running = StateDir(state_root(args))
    if running.read_info() is not None and (running.nats_access / "permissions.json").exists():
        blocks: dict[str, Any] = json.loads((running.nats_access / "permissions.json").read_text())
    else:
        config = load_mesh_config(args)
        try:
            discovered = discover(config.modules_dir)
        except DiscoveryError as error:
            raise CliError("\n".join(error.lines), EXIT_USAGE) from None
        grants, warnings = planned_grants(discovered)
        for warning in warnings:
            error_console.print(f"mesh nats permissions: {warning}", markup=False)
        blocks = {name: grant.permissions() for name, grant in grants.items()}
    if args.module is not None:
        if args.module not in blocks:
            raise CliError(f"no module {args.module!r}; known: {', '.join(sorted(blocks)) or 'none'}", EXIT_USAGE)
        blocks = {args.module: blocks[args.module]}
    console.print_json(json.dumps(blocks, sort_keys=True))
    return EXIT_OK
