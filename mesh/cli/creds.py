"""`mesh creds`: credentials from the mesh CA in the state folder, for people, tools (grpcurl)
and modules that run where `mesh up` does not start them (containers, other hosts).

    mesh creds issue alice --role viewer --out alice/      an operator's ca.pem, cert.pem, key.pem
    mesh creds issue --module checkout --host checkout --out secrets/checkout/
    mesh creds grpcurl-flags [--role viewer]                 -cacert … -cert … -key … for grpcurl
    mesh creds ca --state-dir secrets/mesh                   the CA alone, before the first `mesh up`
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
from pathlib import Path

from mesh.cli._common import EXIT_OK, EXIT_USAGE, CliError, Commands, console, credentials_folder, state_root
from mesh.control.credentials import existing_authority, operator_name
from mesh.control.statedir import StateDir
from mesh.protocol.errors import excerpt
from mesh.protocol.identity import Role, module_identity, operator_identity
from mesh.protocol.pki import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    CertificateAuthority,
    Credentials,
    CredentialsError,
    cert_lifetime_seconds,
)
from mesh.protocol.tokens import SIGNING_KEY_FILE, VERIFICATION_KEYS_FILE, SigningKey

ROLES = tuple(role.name.lower() for role in Role)
MODULE_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")  # as manifests name modules
OPERATOR_NAME = re.compile(r"[A-Za-z0-9._@-]+")
MAX_COMMON_NAME_CHARS = 64
MIN_LIFETIME_SECONDS = 10  # as MESH_CERT_LIFETIME_SECONDS
MAX_LIFETIME_SECONDS = 100 * 365 * 24 * 3600
"""What a certificate's common name holds (RFC 5280's ub-common-name)."""


def register(commands: Commands) -> None:
    """Add `creds issue` and `creds grpcurl-flags` to the `mesh` command."""
    creds = commands.add_parser("creds", help="credentials from the mesh CA: issue, grpcurl-flags, ca")
    actions = creds.add_subparsers(dest="action", metavar="ACTION", required=True)

    issue = actions.add_parser("issue", help="write ca.pem, cert.pem and key.pem for an operator or a module")
    issue.add_argument("name", nargs="?", help="the operator's name (who or what uses the credentials)")
    issue.add_argument("--role", choices=ROLES, help="the operator's role: viewer, operator or admin")
    issue.add_argument("--module", help="issue the identity of this module instead (a module run elsewhere)")
    issue.add_argument(
        "--host",
        action="append",
        default=[],
        help="a host name or address the module is reached at, besides localhost (repeatable)",
    )
    issue.add_argument("--out", type=Path, required=True, help="the folder to write the three files to")
    issue.add_argument(
        "--lifetime",
        type=float,
        help="seconds the certificate is valid (default: env MESH_CERT_LIFETIME_SECONDS, else 24 h)",
    )
    issue.add_argument("--state-dir", type=Path, help="the state folder holding the CA (default .mesh)")
    issue.set_defaults(run=_issue)

    flags = actions.add_parser("grpcurl-flags", help="print the flags grpcurl needs to call the mesh")
    flags.add_argument("--role", choices=ROLES, help="issue (once) and use credentials of this role instead")
    flags.add_argument("--state-dir", type=Path, help="the state folder (default .mesh)")
    flags.add_argument("--creds", type=Path, help=argparse.SUPPRESS)
    flags.set_defaults(run=_grpcurl_flags)

    ca = actions.add_parser(
        "ca", help="create the mesh CA in the state folder (what the first `mesh up` does), to issue before it"
    )
    ca.add_argument("--state-dir", type=Path, help="the state folder (default .mesh)")
    ca.set_defaults(run=_ca)


def _issue(args: argparse.Namespace) -> int:
    if (args.module is None) == (args.name is None):
        raise CliError("give an operator NAME with --role, or --module NAME", EXIT_USAGE)
    if args.module is None and args.role is None:
        raise CliError("an operator needs --role viewer|operator|admin", EXIT_USAGE)
    if args.module is not None and args.role is not None:
        raise CliError("--role is for operators; a module's identity is its name", EXIT_USAGE)
    if args.lifetime is not None and not (MIN_LIFETIME_SECONDS <= args.lifetime <= MAX_LIFETIME_SECONDS):
        raise CliError(
            f"--lifetime is {args.lifetime:g}; expected seconds from {MIN_LIFETIME_SECONDS} to "
            f"{MAX_LIFETIME_SECONDS} (100 years), e.g. 86400",
            EXIT_USAGE,
        )
    if args.module is not None and not MODULE_NAME.fullmatch(args.module):
        raise CliError(f"--module {excerpt(args.module)} is not a module name (kebab-case, e.g. checkout)", EXIT_USAGE)
    if args.name is not None and not OPERATOR_NAME.fullmatch(args.name):
        raise CliError(
            f"{excerpt(args.name)} is not an operator name: letters, digits, '.', '_', '@' or '-', e.g. alice",
            EXIT_USAGE,
        )
    identity = (
        module_identity(args.module)
        if args.module is not None
        else operator_identity(args.name, Role[args.role.upper()])
    )
    if len(identity.common_name) > MAX_COMMON_NAME_CHARS:
        raise CliError(
            f"the identity {excerpt(identity.common_name)} is longer than a certificate's {MAX_COMMON_NAME_CHARS} "
            "characters; choose a shorter name",
            EXIT_USAGE,
        )
    try:
        lifetime = args.lifetime or cert_lifetime_seconds(os.environ)
        authority = existing_authority(state_root(args) / "pki")
        issued = authority.issue(identity.common_name, hosts=args.host, lifetime_seconds=lifetime)
    except CredentialsError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except ValueError as error:  # the certificate library refuses a --host
        raise CliError(f"cannot issue a certificate for --host {' '.join(args.host)}: {error}", EXIT_USAGE) from None
    try:
        issued.write(args.out)
        if args.module is not None:
            # A module verifies its callers' tenant tokens with the mesh's public token key.
            key = SigningKey.load_or_create(state_root(args) / "pki" / SIGNING_KEY_FILE)
            (Path(args.out) / VERIFICATION_KEYS_FILE).write_bytes(key.public_pem)
    except CredentialsError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except OSError as error:
        raise CliError(f"cannot write the credentials to {args.out}: {error.strerror or error}", EXIT_USAGE) from None
    written = "ca.pem, cert.pem, key.pem" + (f", {VERIFICATION_KEYS_FILE}" if args.module is not None else "")
    console.print(f"mesh creds: {identity} → {args.out} ({written})", markup=False, highlight=False)
    return EXIT_OK


def _ca(args: argparse.Namespace) -> int:
    """Modules run elsewhere (compose) need their credentials before the coordinator starts."""
    pki = state_root(args) / "pki"
    try:
        CertificateAuthority.load_or_create(pki)
    except CredentialsError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except OSError as error:
        raise CliError(f"cannot write the CA to {pki}: {error.strerror or error}", EXIT_USAGE) from None
    console.print(f"mesh creds: the mesh CA is in {pki}", markup=False, highlight=False)
    return EXIT_OK


def _grpcurl_flags(args: argparse.Namespace) -> int:
    root = state_root(args)
    if args.role is None:
        folder = credentials_folder(args, StateDir(root).read_info() or {}) or _issued(root, Role.ADMIN)
    else:
        folder = _issued(root, Role[args.role.upper()])
    folder = folder.resolve()
    console.print(
        f"-cacert {folder / CA_FILE} -cert {folder / CERT_FILE} -key {folder / KEY_FILE}",
        markup=False,
        highlight=False,
    )
    return EXIT_OK


def _issued(root: Path, role: Role) -> Path:
    """`<state>/pki/operators/<role>/`, issued from the state folder's CA when not there yet (or expired)."""
    folder = root / "pki" / "operators" / role.name.lower()
    try:
        if Credentials.read(folder).not_after > datetime.datetime.now(datetime.UTC):
            return folder
    except CredentialsError:
        pass  # not issued yet
    try:
        authority = existing_authority(root / "pki")
        common_name = operator_identity(operator_name(), role).common_name
        authority.issue(common_name, lifetime_seconds=cert_lifetime_seconds(os.environ)).write(folder)
    except CredentialsError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except OSError as error:
        raise CliError(f"cannot write credentials to {folder}: {error.strerror or error}", EXIT_USAGE) from None
    return folder
