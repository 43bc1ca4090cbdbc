"""`mesh reload` and `mesh restart`: act on one module of a running mesh."""

from __future__ import annotations

import argparse

from mesh.cli import render
from mesh.cli._common import (
    EXIT_OK,
    Commands,
    call_coordinator,
    console,
    coordinator_address,
    coordinator_option,
    json_struct,
)
from mesh.v1 import coordinator_pb2


def register(commands: Commands) -> None:
    """Add `reload` and `restart` to the `mesh` command."""
    reload = commands.add_parser("reload", help="re-initialize one module with fresh configuration")
    coordinator_option(reload)
    reload.add_argument("name")
    reload.add_argument(
        "--config", dest="config_json", help='configuration overrides as JSON, e.g. \'{"greeting": "Hi"}\''
    )
    reload.set_defaults(run=_reload)

    restart = commands.add_parser("restart", help="replace one module's process (picks up new code)")
    coordinator_option(restart)
    restart.add_argument("name")
    restart.set_defaults(run=_restart)


def _reload(args: argparse.Namespace) -> int:
    request = coordinator_pb2.ReloadModuleRequest(name=args.name)
    if args.config_json:
        request.config.CopyFrom(json_struct(args.config_json, "--config", '{"greeting": "Hi"}'))
    address = coordinator_address(args)
    reply: coordinator_pb2.ReloadModuleResponse = call_coordinator(
        address, lambda stub: stub.ReloadModule(request, timeout=300)
    )
    console.print(f"mesh reload: {reply.status.name} is {render.state_name(reply.status.state)}")
    return EXIT_OK


def _restart(args: argparse.Namespace) -> int:
    address = coordinator_address(args)
    reply: coordinator_pb2.RestartModuleResponse = call_coordinator(
        address, lambda stub: stub.RestartModule(coordinator_pb2.RestartModuleRequest(name=args.name), timeout=300)
    )
    console.print(
        f"mesh restart: {reply.status.name} is {render.state_name(reply.status.state)} at {reply.status.address} "
        f"(pid {reply.status.pid})"
    )
    return EXIT_OK
