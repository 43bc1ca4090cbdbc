"""`mesh up` and `mesh down`: run a mesh in this process, stop a running one."""

from __future__ import annotations

import argparse
import os
import time

from mesh.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    call_coordinator,
    config_options,
    console,
    coordinator_address,
    coordinator_option,
    error_console,
    load_mesh_config,
)
from mesh.cli.gateway import GatewayPlan, gateway_options, gateway_settings
from mesh.control.config import DEFAULT_LISTEN
from mesh.gateway.settings import DEFAULT_LISTEN as DEFAULT_GATEWAY_LISTEN
from mesh.gateway.settings import LISTEN_ENV as GATEWAY_LISTEN_ENV
from mesh.gateway.settings import listen_address
from mesh.protocol.pids import alive
from mesh.v1 import coordinator_pb2

SHUTDOWN_DEADLINE_SECONDS = 600


def register(commands: Commands) -> None:
    """Add `up` and `down` to the `mesh` command."""
    up = commands.add_parser("up", help="run the mesh of a modules folder until interrupted")
    config_options(up)
    up.add_argument("--listen", help=f"the coordinator's address (default {DEFAULT_LISTEN}; env MESH_LISTEN)")
    up.add_argument("--nats-url", help="use this NATS server or cluster instead of an embedded one (env NATS_URL)")
    up.add_argument(
        "--external",
        action="store_true",
        default=None,
        help="the modules run elsewhere and register themselves: validate and sequence them, spawn nothing "
        "(env MESH_EXTERNAL_MODULES)",
    )
    up.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="plaintext gRPC without certificates, for debugging on this machine only (env MESH_INSECURE=1)",
    )
    up.add_argument(
        "--gateway-listen",
        help=f"where the HTTP gateway listens (default {DEFAULT_GATEWAY_LISTEN}; env {GATEWAY_LISTEN_ENV})",
    )
    up.add_argument("--no-gateway", action="store_true", help="start no HTTP gateway")
    gateway_options(up)
    up.set_defaults(run=_up)

    down = commands.add_parser("down", help="stop a running mesh (every module, in reverse order)")
    coordinator_option(down)
    down.add_argument("--no-wait", action="store_true", help="return once the shutdown has begun")
    down.set_defaults(run=_down)


def _up(args: argparse.Namespace) -> int:
    # The coordinator and everything it runs (NATS server, supervisor, telemetry) are needed by
    # `up` alone; imported here, they do not slow down every other command.
    from mesh.cli.up import run_up

    config = load_mesh_config(
        args, listen=args.listen, nats_url=args.nats_url, external_modules=args.external, insecure=args.insecure
    )
    gateway = None
    if not args.no_gateway:
        listen = args.gateway_listen or os.environ.get(GATEWAY_LISTEN_ENV) or DEFAULT_GATEWAY_LISTEN
        try:
            listen_address(listen)
        except ValueError as error:
            raise CliError(f"--gateway-listen {error}", EXIT_USAGE) from None
        gateway = GatewayPlan(listen, gateway_settings(args, None))
    return run_up(config, console, error_console, gateway)


def _down(args: argparse.Namespace) -> int:
    address = coordinator_address(args)
    reply: coordinator_pb2.ShutdownResponse = call_coordinator(
        address, lambda stub: stub.Shutdown(coordinator_pb2.ShutdownRequest(reason="mesh down"), timeout=10)
    )
    console.print(f"mesh down: the coordinator at {address} (pid {reply.pid}) is stopping the mesh")
    if args.no_wait:
        return EXIT_OK
    deadline = time.monotonic() + SHUTDOWN_DEADLINE_SECONDS
    while alive(reply.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(reply.pid):
        raise CliError(f"the coordinator (pid {reply.pid}) is still stopping after {SHUTDOWN_DEADLINE_SECONDS} s")
    console.print("mesh down: every module stopped")
    return EXIT_OK
