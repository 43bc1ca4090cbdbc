"""`mesh gateway`: the mesh's HTTP entry point, run against a running coordinator (several
gateways may serve one mesh behind a load balancer).

    mesh gateway [--listen 127.0.0.1:8080] [--allow-origin https://app.example] [--call-timeout 30]
    curl -X POST localhost:8080/api/v1/users/CreateUser -H "Authorization: Bearer $(mesh token issue --tenant acme)" \\
        -d '{"name": "Ada", "email": "ada@example.org"}'

It verifies callers' bearer tokens with the mesh's token key (the state folder's, or
`--token-keys`, or an external issuer's JWKS in MESH_TOKEN_JWKS), calls the modules with the
credentials `mesh status` uses, and follows the coordinator's module list while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import socket
import tempfile
from pathlib import Path

from aiohttp import web

from mesh.cli._common import EXIT_OK, EXIT_USAGE, CliError, Commands, console, coordinator_address, coordinator_option
from mesh.cli._common import state_root as state_folder
from mesh.gateway.app import GatewaySettings, build_app
from mesh.gateway.directory import ModuleDirectory
from mesh.protocol.pki import CredentialsError
from mesh.protocol.tokens import JWKS_ENV, SIGNING_KEY_FILE, VERIFICATION_KEYS_FILE, SigningKey, TokenVerifier
from mesh.protocol.transport import InsecureBindRefused, refuse_public_plaintext

DEFAULT_LISTEN = "127.0.0.1:8080"
SHUTDOWN_GRACE_SECONDS = 10.0
"""How long the calls in flight get to finish once the gateway is told to stop."""


def register(commands: Commands) -> None:
    """Add `gateway` to the `mesh` command."""
    parser = commands.add_parser("gateway", help="serve the mesh's modules over HTTP/JSON until interrupted")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help=f"host:port to listen on (default {DEFAULT_LISTEN})")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="an origin browsers may call from, e.g. https://app.example (repeatable; default none)",
    )
    parser.add_argument(
        "--call-timeout", type=float, default=30.0, help="seconds a call to a module may take (default 30)"
    )
    parser.add_argument(
        "--token-keys",
        type=Path,
        help="a PEM file of the public keys tokens are verified with (default: the mesh's, from the state folder)",
    )
    coordinator_option(parser)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    host, port = _listen_address(args.listen)
    if not (math.isfinite(args.call_timeout) and args.call_timeout > 0):
        raise CliError(f"--call-timeout must be a positive number of seconds, not {args.call_timeout}", EXIT_USAGE)
    coordinator = coordinator_address(args)
    if not coordinator.found_credentials:
        raise CliError(
            "no credentials to call the mesh with: run in the folder of `mesh up` (its state folder holds "
            "them), or give --creds (`mesh creds issue NAME --role viewer --out DIR` writes them), or set "
            "MESH_INSECURE=1 for a plaintext mesh",
            EXIT_USAGE,
        )
    with tempfile.TemporaryDirectory(prefix="mesh-gateway-") as scratch:
        tokens = None if coordinator.transport.folder is None else _token_verifier(args, Path(scratch))
        if tokens is None:
            try:
                refuse_public_plaintext(args.listen)
            except InsecureBindRefused as error:
                raise CliError(str(error), EXIT_USAGE) from None
        settings = GatewaySettings(tokens, args.call_timeout, allowed_origins=frozenset(args.allow_origin))
        return asyncio.run(_serve(host, port, ModuleDirectory(coordinator.address, coordinator.transport), settings))


async def _serve(host: str, port: int, directory: ModuleDirectory, settings: GatewaySettings) -> int:
    runner = web.AppRunner(build_app(directory, settings), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    try:
        listening = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        await runner.cleanup()
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}", EXIT_USAGE) from None
    bound = int(listening.getsockname()[1])  # our own socket: port 0 asks for any free port
    await web.SockSite(runner, listening).start()
    follow = asyncio.create_task(directory.follow(), name="follow-coordinator")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    checked = "bearer tokens verified" if settings.tokens is not None else "plaintext mesh: tokens not verified"
    console.print(
        f"mesh gateway: serving http://{_url_host(host)}:{bound}/api/v1/<module>/<Method> for the mesh at "
        f"{directory.coordinator} ({checked})",
        markup=False,
        highlight=False,
    )
    try:
        await stop.wait()
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        await runner.cleanup()
        await directory.close()
    console.print("mesh gateway: stopped", markup=False, highlight=False)
    return EXIT_OK


def _token_verifier(args: argparse.Namespace, scratch: Path) -> TokenVerifier:
    """The keys tokens are verified with: --token-keys, else the public half of the mesh's token
    key in the state folder (written to `scratch`); an external issuer's JWKS (MESH_TOKEN_JWKS)
    besides, as modules trust it.

    Raises:
        CliError: no key can be read (exit 2).
    """
    pem_file: Path | None = args.token_keys
    if pem_file is None:
        key_file = state_folder(args) / "pki" / SIGNING_KEY_FILE
        try:
            public_pem = SigningKey.read(key_file).public_pem
        except CredentialsError as error:
            if not os.environ.get(JWKS_ENV):
                raise CliError(f"{error}; or give --token-keys", EXIT_USAGE) from None
        else:
            pem_file = scratch / VERIFICATION_KEYS_FILE
            pem_file.write_bytes(public_pem)
    elif not pem_file.is_file():
        raise CliError(f"--token-keys {pem_file}: no such file", EXIT_USAGE)
    return TokenVerifier.with_keys(pem_file, os.environ)


def _listen_address(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or int(port) > 65535:
        raise CliError(f"--listen {text!r} is not host:port, e.g. {DEFAULT_LISTEN} (port 0: any free port)", EXIT_USAGE)
    return host.strip("[]") or "0.0.0.0", int(port)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
