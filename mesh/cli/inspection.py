"""`mesh status`, `address`, `health` and `graph`: look at a mesh without changing it."""

from __future__ import annotations

import argparse
import os

from rich.text import Text

from mesh.cli import render, shapes
from mesh.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    call_coordinator,
    config_options,
    console,
    coordinator_address,
    coordinator_option,
    discovered_modules,
    error_console,
    load_mesh_config,
)
from mesh.control import graph
from mesh.protocol.states import State
from mesh.v1 import coordinator_pb2, health_pb2

SETTLED_STATES = {State.RUNNING.value, State.SKIPPED.value}
HEALTH_EXIT_CODES = {health_pb2.HEALTH_STATUS_HEALTHY: EXIT_OK, health_pb2.HEALTH_STATUS_DEGRADED: EXIT_FAILED}


def register(commands: Commands) -> None:
    """Add `status`, `address`, `health` and `graph` to the `mesh` command."""
    status = commands.add_parser("status", help="the modules and their states")
    coordinator_option(status)
    shown = status.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print a JSON list of modules instead of a table")
    shown.add_argument("--names", action="store_true", help="print only the module names, one a line")
    status.set_defaults(run=_status)

    address = commands.add_parser("address", help="print one module's gRPC address (for scripts and grpcurl)")
    coordinator_option(address)
    address.add_argument("name", help="the module's name")
    address.add_argument("--json", action="store_true", help="print {name, address, state} as JSON")
    address.set_defaults(run=_address)

    health = commands.add_parser("health", help="the system health (exit 0 healthy, 1 degraded, 2 unhealthy)")
    coordinator_option(health)
    health.add_argument("--fresh", action="store_true", help="check now instead of a cached result")
    health.add_argument("--json", action="store_true", help="print JSON (the exit code stays the same)")
    health.set_defaults(run=_health)

    graph_parser = commands.add_parser("graph", help="the dependency graph, from the manifests")
    config_options(graph_parser)
    form = graph_parser.add_mutually_exclusive_group()
    form.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    form.add_argument("--json", action="store_true", help="print a JSON list of modules with their dependencies")
    graph_parser.set_defaults(run=_graph)


def _status(args: argparse.Namespace) -> int:
    address = coordinator_address(args)
    reply: coordinator_pb2.ListModulesResponse = call_coordinator(
        address, lambda stub: stub.ListModules(coordinator_pb2.ListModulesRequest(), timeout=10)
    )
    if args.json:
        shapes.print_json([shapes.module_status(module) for module in reply.modules])
    elif args.names:
        for module in reply.modules:
            print(module.name)
    else:
        console.print(render.module_table(reply.modules, title=f"mesh at {address}"))
    return EXIT_OK if all(module.state in SETTLED_STATES for module in reply.modules) else EXIT_FAILED


def _address(args: argparse.Namespace) -> int:
    coordinator = coordinator_address(args)
    reply: coordinator_pb2.GetModuleResponse = call_coordinator(
        coordinator, lambda stub: stub.GetModule(coordinator_pb2.GetModuleRequest(name=args.name), timeout=10)
    )
    state = render.state_name(reply.status.state)
    if not reply.status.address:
        raise CliError(f"module {args.name} has no address ({state}); see `mesh status` and `mesh logs {args.name}`")
    if args.json:
        shapes.print_json({"name": reply.status.name, "address": reply.status.address, "state": state})
    else:
        print(reply.status.address)
    return EXIT_OK


def _health(args: argparse.Namespace) -> int:
    address = coordinator_address(args)
    reply: coordinator_pb2.GetSystemHealthResponse = call_coordinator(
        address,
        lambda stub: stub.GetSystemHealth(coordinator_pb2.GetSystemHealthRequest(fresh=args.fresh), timeout=30),
    )
    if args.json:
        shapes.print_json(shapes.system_health(reply.status, reply.components, reply.modules))
        return HEALTH_EXIT_CODES.get(reply.status, EXIT_USAGE)
    name = render.HEALTH_NAME.get(reply.status, "unknown")
    console.print(Text.assemble(f"mesh at {address}: ", (name, render.HEALTH_STYLE[name])))
    for component in reply.components:  # the mesh's own parts (NATS, JetStream)
        status = render.HEALTH_NAME.get(component.status, "unknown")
        detail = f" ({component.message})" if component.message else ""
        console.print(Text.assemble(f"{component.name}: ", (status, render.HEALTH_STYLE[status]), detail))
    console.print(render.health_table(reply.modules))
    return HEALTH_EXIT_CODES.get(reply.status, EXIT_USAGE)


def _graph(args: argparse.Namespace) -> int:
    config = load_mesh_config(args)
    discovered = discovered_modules(args)
    manifests = {name: module.manifest for name, module in discovered.items()}
    skipped = graph.skipped_modules(manifests, os.environ, config.flags)
    if args.json:
        shapes.print_json(
            [
                {
                    "name": name,
                    "version": manifest.version,
                    "dependencies": [
                        {"name": d.name, "version": d.version, "optional": d.optional} for d in manifest.dependencies
                    ],
                    "skipped": skipped.get(name),
                }
                for name, manifest in sorted(manifests.items())
            ]
        )
    elif not manifests and args.format == "text":
        print(f"modules: none (no module.toml in the folders of {config.modules_dir})")
    else:
        render_graph = {"text": render.graph_tree, "mermaid": render.graph_mermaid, "dot": render.graph_dot}
        print(render_graph[args.format](manifests, skipped))
    problems = graph.find_problems({n: m for n, m in manifests.items() if n not in skipped})
    for problem in problems:
        error_console.print(f"mesh graph: {problem.message}", markup=False)
    return EXIT_USAGE if problems else EXIT_OK
