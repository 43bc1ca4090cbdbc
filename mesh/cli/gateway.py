"""`mesh gateway`: the mesh's HTTP entry point, run against a running coordinator (several
gateways may serve one mesh behind a load balancer; `mesh up` starts one of its own).

    mesh gateway [--listen 127.0.0.1:8080] [--allow-origin https://app.example] [--call-timeout 30]
    curl -X POST localhost:8080/api/v1/users/CreateUser -H "Authorization: Bearer $(mesh token issue --tenant acme)" \\
        -d '{"name": "Ada", "email": "ada@example.org"}'

It verifies callers' bearer tokens with the mesh's token key (the state folder's, or
`--token-keys`, or an external issuer's JWKS in MESH_TOKEN_JWKS), calls the modules with the
credentials `mesh status` uses, and follows the coordinator's module list while it runs. Its
rate limits are shared with the other gateways through the mesh's NATS (`--nats-url`, else
NATS_URL, else the running mesh's), as the NATS user mesh-gateway (the state folder's login,
else MESH_NATS_CREDENTIALS's).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import tempfile
import uuid
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mesh.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    CoordinatorAddress,
    console,
    coordinator_address,
    coordinator_option,
    nats_url,
)
from mesh.cli._common import state_root as state_folder
from mesh.gateway.limit_plans import RateLimits, read_rate_limits
from mesh.gateway.limits import RateLimit
from mesh.gateway.settings import (
    DEFAULT_LISTEN,
    DEFAULT_RATE_LIMIT,
    RATE_LIMITS_ENV,
    GatewaySettings,
    LimitsBus,
    listen_address,
)

if TYPE_CHECKING:
    from mesh.gateway.directory import ModuleDirectory
from mesh.protocol.pki import CredentialsError
from mesh.protocol.tokens import JWKS_ENV, SIGNING_KEY_FILE, TokenVerifier
from mesh.protocol.transport import InsecureBindRefused, refuse_public_plaintext


def register(commands: Commands) -> None:
    """Add `gateway` to the `mesh` command."""
    parser = commands.add_parser("gateway", help="serve the mesh's modules over HTTP/JSON until interrupted")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help=f"host:port to listen on (default {DEFAULT_LISTEN})")
    gateway_options(parser)
    parser.add_argument(
        "--token-keys",
        type=Path,
        help="a PEM file of the public keys tokens are verified with (default: the mesh's, from the state folder)",
    )
    parser.add_argument(
        "--nats-url",
        help="the mesh's NATS, through which the gateways share their rate limits (default: env NATS_URL, then "
        "the running mesh's)",
    )
    coordinator_option(parser)
    parser.set_defaults(run=_run)


def gateway_options(parser: argparse.ArgumentParser) -> None:
    """The options `mesh gateway` and `mesh up` share."""
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="an origin browsers may call the gateway from, e.g. https://app.example (repeatable; default none)",
    )
    parser.add_argument(
        "--call-timeout", type=float, default=30.0, help="seconds a gateway call to a module may take (default 30)"
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        help=f"calls a second each tenant may make of each route (default {DEFAULT_RATE_LIMIT.rate:g}, or the "
        "limits file's; 0: no limit)",
    )
    parser.add_argument(
        "--rate-burst",
        type=int,
        help=f"calls a tenant may make of a route at once, above the rate (default {DEFAULT_RATE_LIMIT.burst}, or "
        "the limits file's)",
    )
    parser.add_argument(
        "--rate-limits",
        type=Path,
        metavar="FILE",
        default=os.environ.get(RATE_LIMITS_ENV) or None,
        help=f"a TOML file of rate limits per module, per tenant plan and each tenant's plan (docs/gateway.md; "
        f"env {RATE_LIMITS_ENV})",
    )


@dataclass(frozen=True)
class GatewayPlan:
    """The gateway `mesh up` is to start: where, and how it answers (its token verifier is
    made once the mesh's key exists)."""

    listen: str
    settings: GatewaySettings


def gateway_settings(args: argparse.Namespace, tokens: TokenVerifier | None) -> GatewaySettings:
    """The settings of `gateway_options`.

    Raises:
        CliError: --call-timeout is not a positive number (exit 2).
    """
    if not (math.isfinite(args.call_timeout) and args.call_timeout > 0):
        raise CliError(f"--call-timeout must be a positive number of seconds, not {args.call_timeout}", EXIT_USAGE)
    return GatewaySettings(
        tokens,
        args.call_timeout,
        allowed_origins=frozenset(args.allow_origin),
        rate_limits=_rate_limits(args),
    )


def _rate_limits(args: argparse.Namespace) -> RateLimits:
    """The limits file (if given), its default replaced by --rate-limit and --rate-burst.

    Raises:
        CliError: the file is not a limits file, or an option is out of range (exit 2).
    """
    if args.rate_limit is not None and not (math.isfinite(args.rate_limit) and args.rate_limit >= 0):
        raise CliError(f"--rate-limit must be calls a second, 0 or more, not {args.rate_limit}", EXIT_USAGE)
    if args.rate_burst is not None and args.rate_burst < 1:
        raise CliError(f"--rate-burst must be at least 1 call, not {args.rate_burst}", EXIT_USAGE)
    limits = RateLimits.uniform(DEFAULT_RATE_LIMIT)
    if args.rate_limits is not None:
        try:
            limits = read_rate_limits(Path(args.rate_limits))
        except ValueError as error:
            raise CliError(str(error), EXIT_USAGE) from None
    if args.rate_limit is None and args.rate_burst is None:
        return limits
    rate = limits.default.rate if args.rate_limit is None else args.rate_limit
    burst = args.rate_burst if args.rate_burst is not None else max(1, math.ceil(2 * rate))
    return limits.with_default(RateLimit(rate, burst))


def _run(args: argparse.Namespace) -> int:
    try:
        listen_address(args.listen)
    except ValueError as error:
        raise CliError(f"--listen {error}", EXIT_USAGE) from None
    checked = gateway_settings(args, None)  # the options, checked before anything is read
    coordinator = coordinator_address(args)
    if not coordinator.found_credentials:
        raise CliError(
            "no credentials to call the mesh with: run in the folder of `mesh up` (its state folder holds "
            "them), or give --creds (`mesh creds issue NAME --role viewer --out DIR` writes them), or set "
            "MESH_INSECURE=1 for a plaintext mesh",
            EXIT_USAGE,
        )
    bus = _limits_bus(args, checked.rate_limits)
    with tempfile.TemporaryDirectory(prefix="mesh-gateway-") as scratch:
        tokens = None if coordinator.transport.folder is None else _token_verifier(args, Path(scratch))
        if tokens is None:
            try:
                refuse_public_plaintext(args.listen)
            except InsecureBindRefused as error:
                raise CliError(str(error), EXIT_USAGE) from None
        settings = replace(gateway_settings(args, tokens), limits_bus=bus)
        return asyncio.run(_serve(args.listen, coordinator, settings))


def _limits_bus(args: argparse.Namespace, limits: RateLimits) -> LimitsBus | None:
    """The NATS this gateway shares its rate limits through, with the gateways' login; None
    when nothing is limited.

    Raises:
        CliError: no NATS is known, or its login cannot be read (exit 2).
    """
    if limits.limits_nothing:
        return None
    url = nats_url(args)
    if url is None:
        raise CliError(
            f"no NATS to share the rate limits with the other gateways through: no running mesh in "
            f"{state_folder(args)} to take its URL from; pass --nats-url (or set NATS_URL), or --rate-limit 0 "
            "to limit nothing",
            EXIT_USAGE,
        )
    for server in url.split(","):
        parsed = urlsplit(server.strip())
        if parsed.scheme not in ("nats", "tls", "ws", "wss") or not parsed.hostname or " " in server.strip():
            raise CliError(
                f"--nats-url (or NATS_URL) {server!r} is no NATS URL; give nats://host:port (several: comma-separated)",
                EXIT_USAGE,
            )
    # The NATS logins are needed here alone; imported here, nats-py does not slow down other commands.
    from mesh.control.nats_identities import gateway_login
    from mesh.control.statedir import StateDir
    from mesh.protocol.errors import MeshError

    try:
        login = gateway_login(StateDir(state_folder(args)).nats_access, os.environ)
    except MeshError as error:
        raise CliError(error.message, EXIT_USAGE) from None
    return LimitsBus(tuple(url.split(",")), login.user, login.password)


async def _serve(listen: str, coordinator: CoordinatorAddress, settings: GatewaySettings) -> int:
    # The HTTP server is needed by `gateway` (and `up`) alone: imported here, aiohttp does not
    # slow down every other command.
    from mesh.gateway.directory import ModuleDirectory
    from mesh.protocol.telemetry import configure_telemetry, shutdown_telemetry

    try:
        configure_telemetry(
            service_name="mesh-gateway", service_version=metadata.version("module-mesh"), instance_id=uuid.uuid4().hex
        )
    except ValueError as error:  # an OTEL_* setting names what does not exist
        raise CliError(str(error), EXIT_USAGE) from None
    try:
        return await _run_gateway(listen, ModuleDirectory(coordinator.address, coordinator.transport), settings)
    finally:
        await asyncio.to_thread(shutdown_telemetry)


async def _run_gateway(listen: str, directory: ModuleDirectory, settings: GatewaySettings) -> int:
    from mesh.gateway.serve import RunningGateway

    try:
        gateway = await RunningGateway.start(listen, directory, settings)
    except OSError as error:
        raise CliError(f"cannot listen on {listen}: {error.strerror or error}", EXIT_USAGE) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    checked = "bearer tokens verified" if settings.tokens is not None else "plaintext mesh: tokens not verified"
    if settings.limits_bus is not None:
        checked += f"; rate limits shared through NATS at {','.join(settings.limits_bus.servers)}"
    console.print(
        f"mesh gateway: serving {gateway.url}/api/v1/<module>/<Method> for the mesh at {directory.coordinator} "
        f"({checked})",
        markup=False,
        highlight=False,
    )
    try:
        await stop.wait()
    finally:
        await gateway.stop()
    console.print("mesh gateway: stopped", markup=False, highlight=False)
    return EXIT_OK


def _token_verifier(args: argparse.Namespace, scratch: Path) -> TokenVerifier:
    """The keys tokens are verified with: --token-keys, else the public half of the mesh's token
    key in the state folder; an external issuer's JWKS (MESH_TOKEN_JWKS) besides, as modules
    trust it.

    Raises:
        CliError: no key can be read (exit 2).
    """
    from mesh.gateway.serve import mesh_token_verifier

    if args.token_keys is not None:
        if not args.token_keys.is_file():
            raise CliError(f"--token-keys {args.token_keys}: no such file", EXIT_USAGE)
        return TokenVerifier.with_keys(args.token_keys, os.environ)
    try:
        return mesh_token_verifier(state_folder(args) / "pki" / SIGNING_KEY_FILE, scratch, os.environ)
    except CredentialsError as error:
        if not os.environ.get(JWKS_ENV):
            raise CliError(f"{error}; or give --token-keys", EXIT_USAGE) from None
        return TokenVerifier.with_keys(None, os.environ)
