"""`mesh token`: bearer tokens that prove a tenant to the mesh's modules, signed by the mesh's
own key in the state folder (made by `mesh up`), for people and tools calling from outside.

    mesh token issue --tenant acme [--company north] [--role clerk …] [--ttl 3600]
    grpcurl -H "authorization: Bearer $(mesh token issue --tenant acme)" …
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mesh.cli._common import EXIT_OK, EXIT_USAGE, CliError, Commands, console, state_root
from mesh.control.credentials import operator_name
from mesh.protocol.errors import MeshError
from mesh.protocol.names import check_id
from mesh.protocol.pki import CredentialsError
from mesh.protocol.tokens import DEFAULT_TTL_SECONDS, SIGNING_KEY_FILE, SigningKey, issue


def register(commands: Commands) -> None:
    """Add `token issue` to the `mesh` command."""
    token = commands.add_parser("token", help="bearer tokens that prove a tenant: issue")
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)

    issue_parser = actions.add_parser("issue", help="print a token for a tenant, signed by the mesh's key")
    issue_parser.add_argument("--tenant", required=True, help="the tenant the bearer acts for")
    issue_parser.add_argument("--company", default="", help="the company within the tenant")
    issue_parser.add_argument(
        "--role", action="append", default=[], help="an application role of the bearer (repeatable)"
    )
    issue_parser.add_argument(
        "--ttl", type=float, default=DEFAULT_TTL_SECONDS, help="seconds the token is valid (default 3600)"
    )
    issue_parser.add_argument("--subject", help="who the bearer is (default: your login name)")
    issue_parser.add_argument("--state-dir", type=Path, help="the state folder holding the key (default .mesh)")
    issue_parser.set_defaults(run=_issue)


def _issue(args: argparse.Namespace) -> int:
    if not 0 < args.ttl < math.inf:
        raise CliError(f"--ttl is {args.ttl:g}; expected seconds > 0, e.g. 3600", EXIT_USAGE)
    try:
        check_id(args.tenant, "tenant")
        if args.company:
            check_id(args.company, "company")
        key = SigningKey.read(state_root(args) / "pki" / SIGNING_KEY_FILE)
    except (MeshError, CredentialsError) as error:
        raise CliError(error.message if isinstance(error, MeshError) else str(error), EXIT_USAGE) from None
    token = issue(key, args.tenant, args.company, args.role, args.ttl, args.subject or operator_name())
    console.print(token, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK
