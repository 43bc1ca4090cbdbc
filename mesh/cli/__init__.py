"""The `mesh` command line.

    mesh up        run the mesh of a modules folder until interrupted
    mesh down      stop a running mesh
    mesh status    the modules and their states
    mesh address   one module's gRPC address
    mesh health    the system health
    mesh graph     the dependency graph (text tree, --format mermaid or dot)
    mesh reload    re-initialize one module with fresh configuration
    mesh restart   replace one module's process
    mesh logs      one module's log
    mesh new       create a module (manifest, proto, code, test, README)
    mesh events    the event catalogue (--asyncapi FILE writes an AsyncAPI 3.0 document)
    mesh dlq       dead letters: list, show SEQ, replay SEQ
    mesh tenant    enable | disable | list: which modules serve a tenant
    mesh flags     set | get: feature flags of a tenant
    mesh config    set | get | effective: layered configuration of a module

Exit codes: 0 success; 1 the operation failed (or, for `status`, a module is not
running; for `health`, the mesh is degraded); 2 bad usage or invalid input (for `health`,
the mesh is unhealthy); 3 the coordinator is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2
from rich.console import Console

from mesh.cli import render
from mesh.control import graph
from mesh.control.config import DEFAULT_LISTEN, ConfigError, load_config
from mesh.control.discovery import DiscoveryError, discover
from mesh.control.statedir import StateDir
from mesh.protocol.errors import error_info
from mesh.protocol.logs import configure_logging
from mesh.protocol.states import State
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, health_pb2, tenancy_pb2, tenancy_pb2_grpc

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(Exception):
    """An error with its exit code; printed as one line, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    """Run the `mesh` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        configure_logging(os.environ.get("MESH_LOG_LEVEL", "WARNING"), os.environ.get("MESH_LOG_FORMAT", "text"))
    except ValueError as error:
        error_console.print(f"mesh: {error}", markup=False)
        return EXIT_USAGE
    try:
        return args.run(args)
    except CliError as error:
        error_console.print(f"mesh {args.command}: {error}", markup=False)
        return error.code
    except KeyboardInterrupt:
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesh", description="Module Mesh: run and inspect a mesh of modules.")
    parser.add_argument("--version", action="version", version=f"mesh {metadata.version('module-mesh')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = commands.add_parser("up", help="run the mesh of a modules folder until interrupted")
    _config_options(up)
    up.add_argument("--listen", help=f"the coordinator's address (default {DEFAULT_LISTEN}; env MESH_LISTEN)")
    up.add_argument("--nats-url", help="use this NATS server or cluster instead of an embedded one (env NATS_URL)")
    up.add_argument(
        "--external",
        action="store_true",
        default=None,
        help="the modules run elsewhere and register themselves: validate and sequence them, spawn nothing "
        "(env MESH_EXTERNAL_MODULES)",
    )
    up.set_defaults(run=_up)

    down = commands.add_parser("down", help="stop a running mesh (every module, in reverse order)")
    _coordinator_option(down)
    down.add_argument("--no-wait", action="store_true", help="return once the shutdown has begun")
    down.set_defaults(run=_down)

    status = commands.add_parser("status", help="the modules and their states")
    _coordinator_option(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(run=_status)

    address = commands.add_parser("address", help="print one module's gRPC address (for scripts and grpcurl)")
    _coordinator_option(address)
    address.add_argument("name")
    address.set_defaults(run=_address)

    health = commands.add_parser("health", help="the system health (exit 0 healthy, 1 degraded, 2 unhealthy)")
    _coordinator_option(health)
    health.add_argument("--fresh", action="store_true", help="check now instead of a cached result")
    health.set_defaults(run=_health)

    graph_parser = commands.add_parser("graph", help="the dependency graph, from the manifests")
    _config_options(graph_parser)
    graph_parser.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    graph_parser.set_defaults(run=_graph)

    reload = commands.add_parser("reload", help="re-initialize one module with fresh configuration")
    _coordinator_option(reload)
    reload.add_argument("name")
    reload.add_argument(
        "--config", dest="config_json", help='configuration overrides as JSON, e.g. \'{"greeting": "Hi"}\''
    )
    reload.set_defaults(run=_reload)

    restart = commands.add_parser("restart", help="replace one module's process (picks up new code)")
    _coordinator_option(restart)
    restart.add_argument("name")
    restart.set_defaults(run=_restart)

    events = commands.add_parser("events", help="the event types with publishers, subscribers and JSON Schemas")
    _config_options(events)
    events.add_argument("--asyncapi", type=Path, metavar="FILE", help="write an AsyncAPI 3.0 document (JSON) there")
    events.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    events.set_defaults(run=_events)

    dlq = commands.add_parser("dlq", help="dead letters: list, show, replay")
    dlq.add_argument("action", choices=("list", "show", "replay"))
    dlq.add_argument("seq", nargs="?", type=int, help="the dead letter's sequence number (show, replay)")
    dlq.add_argument("--module", help="only this module's dead letters (list, replay --all)")
    dlq.add_argument("--all", action="store_true", help="replay every dead letter (of --module, if given)")
    dlq.add_argument("--keep", action="store_true", help="keep the dead letter after replaying it")
    dlq.add_argument("--json", action="store_true", help="list as JSON")
    dlq.add_argument("--nats-url", help="the mesh's NATS (default: env NATS_URL, then the running mesh's)")
    dlq.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)
    dlq.set_defaults(run=_dlq)

    tenant = commands.add_parser("tenant", help="which modules serve a tenant: enable, disable, list")
    tenant_actions = tenant.add_subparsers(dest="tenant_action", metavar="ACTION", required=True)
    for action, extra in (("enable", "--with-dependencies"), ("disable", "--cascade")):
        sub = tenant_actions.add_parser(action)
        _coordinator_option(sub)
        sub.add_argument("tenant")
        sub.add_argument("module")
        sub.add_argument(
            extra,
            action="store_true",
            help="also enable the dependencies" if action == "enable" else "also disable the dependents",
        )
        sub.add_argument("--actor", default=os.environ.get("USER", "cli"), help="who asks, for the audit trail")
        sub.set_defaults(run=_tenant)
    listing = tenant_actions.add_parser("list")
    _coordinator_option(listing)
    listing.add_argument("tenant")
    listing.set_defaults(run=_tenant)

    flags = commands.add_parser("flags", help="feature flags of a tenant: set, get")
    flag_actions = flags.add_subparsers(dest="flag_action", metavar="ACTION", required=True)
    setting = flag_actions.add_parser("set")
    _coordinator_option(setting)
    setting.add_argument("tenant")
    setting.add_argument("flag")
    setting.add_argument("value", choices=("on", "off"))
    setting.add_argument("--actor", default=os.environ.get("USER", "cli"))
    setting.set_defaults(run=_flags)
    getting = flag_actions.add_parser("get")
    _coordinator_option(getting)
    getting.add_argument("tenant")
    getting.set_defaults(run=_flags)

    config_cmd = commands.add_parser("config", help="layered configuration: set, get, effective")
    config_actions = config_cmd.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    for action in ("set", "get", "effective"):
        sub = config_actions.add_parser(action)
        _coordinator_option(sub)
        sub.add_argument("module")
        sub.add_argument("tenant")
        sub.add_argument("--company", default="", help="the company level (default: the tenant level)")
        if action == "set":
            sub.add_argument("json", help='the override, a JSON object, e.g. \'{"currency": "EUR"}\'')
            sub.add_argument("--actor", default=os.environ.get("USER", "cli"))
        sub.set_defaults(run=_config)

    new = commands.add_parser("new", help="create a module that runs as it is: manifest, proto, code, test, README")
    new.add_argument("name", help="the module's kebab-case name, e.g. shipping")
    new.add_argument("--modules", type=Path, default=Path("modules"), help="the modules folder (default modules)")
    new.add_argument("--description", default="", help="one sentence on what the module does")
    new.set_defaults(run=_new)

    logs = commands.add_parser("logs", help="one module's log")
    logs.add_argument("name")
    logs.add_argument("--state-dir", type=Path, help="the mesh's state folder (default .mesh; env MESH_STATE_DIR)")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many of the last lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(run=_logs)
    return parser


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the mesh configuration file (default ./mesh.toml when present)")
    parser.add_argument("--modules", type=Path, help="the modules folder (default modules; env MESH_MODULES_DIR)")
    parser.add_argument("--state-dir", type=Path, help="where logs and state go (default .mesh; env MESH_STATE_DIR)")


def _coordinator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--coordinator",
        help="the coordinator's host:port (default: env MESH_COORDINATOR, then the one running "
        f"with the state folder .mesh, then {DEFAULT_LISTEN})",
    )
    parser.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)


def _load_config(args: argparse.Namespace, **extra: Any):
    try:
        return load_config(
            args.config,
            overrides={"modules_dir": args.modules, "state_dir": args.state_dir, **extra},
        )
    except ConfigError as error:
        raise CliError(str(error), EXIT_USAGE) from None


# --- up / down ---------------------------------------------------------------------------


def _up(args: argparse.Namespace) -> int:
    from mesh.cli.up import run_up  # the coordinator's imports are needed by `up` alone

    config = _load_config(args, listen=args.listen, nats_url=args.nats_url, external_modules=args.external)
    return run_up(config, console, error_console)


def _down(args: argparse.Namespace) -> int:
    address = _coordinator_address(args)
    reply = _call(address, lambda stub: stub.Shutdown(coordinator_pb2.ShutdownRequest(reason="mesh down"), timeout=10))
    console.print(f"mesh down: the coordinator at {address} (pid {reply.pid}) is stopping the mesh")
    if args.no_wait:
        return EXIT_OK
    deadline = time.monotonic() + 600
    while _pid_alive(reply.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(reply.pid):
        raise CliError(f"the coordinator (pid {reply.pid}) is still stopping after 600 s")
    console.print("mesh down: every module stopped")
    return EXIT_OK


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs; an exited process that its parent has not reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: the signal check above is all there is
    return state != "Z"


# --- inspecting ---------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    address = _coordinator_address(args)
    reply = _call(address, lambda stub: stub.ListModules(coordinator_pb2.ListModulesRequest(), timeout=10))
    if args.json:
        from google.protobuf import json_format

        console.print_json(json_format.MessageToJson(reply))
    else:
        console.print(render.module_table(reply.modules, title=f"mesh at {address}"))
    settled = {State.RUNNING.value, State.SKIPPED.value}
    return EXIT_OK if all(module.state in settled for module in reply.modules) else EXIT_FAILED


def _address(args: argparse.Namespace) -> int:
    coordinator = _coordinator_address(args)
    reply = _call(
        coordinator, lambda stub: stub.GetModule(coordinator_pb2.GetModuleRequest(name=args.name), timeout=10)
    )
    if not reply.status.address:
        raise CliError(f"module {args.name} has no address ({render.state_name(reply.status.state)})")
    print(reply.status.address)
    return EXIT_OK


def _health(args: argparse.Namespace) -> int:
    address = _coordinator_address(args)
    reply = _call(
        address, lambda stub: stub.GetSystemHealth(coordinator_pb2.GetSystemHealthRequest(fresh=args.fresh), timeout=30)
    )
    name = render.HEALTH_NAME.get(reply.status, "unknown")
    console.print(f"mesh at {address}: [{render.HEALTH_STYLE[name]}]{name}[/]")
    console.print(render.health_table(reply.modules))
    return {health_pb2.HEALTH_STATUS_HEALTHY: EXIT_OK, health_pb2.HEALTH_STATUS_DEGRADED: EXIT_FAILED}.get(
        reply.status, EXIT_USAGE
    )


def _graph(args: argparse.Namespace) -> int:
    config = _load_config(args)
    try:
        discovered = discover(config.modules_dir)
    except DiscoveryError as error:
        raise CliError("\n".join(error.lines), EXIT_USAGE) from None
    manifests = {name: module.manifest for name, module in discovered.items()}
    skipped = graph.skipped_modules(manifests, os.environ, config.flags)
    render_graph = {"text": render.graph_tree, "mermaid": render.graph_mermaid, "dot": render.graph_dot}[args.format]
    print(render_graph(manifests, skipped))
    problems = graph.find_problems({n: m for n, m in manifests.items() if n not in skipped})
    for problem in problems:
        error_console.print(f"mesh graph: {problem.message}", markup=False)
    return EXIT_USAGE if problems else EXIT_OK


def _new(args: argparse.Namespace) -> int:
    from mesh.cli.scaffold import ScaffoldError, create

    if not args.modules.is_dir():
        raise CliError(f"{args.modules} is not a folder; pass --modules", EXIT_USAGE)
    try:
        folder = create(args.modules, args.name, args.description or f"The {args.name} module.")
    except ScaffoldError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    console.print(
        f"mesh new: created {folder} (manifest, v1 proto and its generated code, module.py, a test, README).\n"
        f"Try it: make test, then make run (or python -m sdk.run {folder})."
    )
    return EXIT_OK


def _logs(args: argparse.Namespace) -> int:
    root = args.state_dir or Path(os.environ.get("MESH_STATE_DIR", ".mesh"))
    path = StateDir(root).logs / f"{args.name}.log"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.log"))
        raise CliError(f"no log of module '{args.name}' in {path.parent} (logs there: {', '.join(known) or 'none'})")
    with open(path, errors="replace") as log:
        for line in log.readlines()[-args.lines :]:
            sys.stdout.write(line)
        sys.stdout.flush()
        while args.follow:
            line = log.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return EXIT_OK


def _events(args: argparse.Namespace) -> int:
    from mesh.control.catalog import asyncapi, build_catalog

    config = _load_config(args)
    try:
        discovered = discover(config.modules_dir)
    except DiscoveryError as error:
        raise CliError("\n".join(error.lines), EXIT_USAGE) from None
    catalog = build_catalog(discovered)
    if args.asyncapi:
        args.asyncapi.write_text(json.dumps(asyncapi(catalog), indent=2) + "\n")
        console.print(
            f"mesh events: wrote an AsyncAPI 3.0 document of {len(catalog.types)} event types to {args.asyncapi}"
        )
    elif args.json:
        console.print_json(
            json.dumps(
                {
                    event_type: {
                        "publishers": entry.publishers,
                        "subscribers": [vars(subscriber) for subscriber in entry.subscribers],
                        "content_type": entry.content_type,
                        "schema": entry.schema,
                    }
                    for event_type, entry in catalog.types.items()
                }
            )
        )
    else:
        console.print(render.events_table(catalog))
    for warning in catalog.warnings:
        error_console.print(f"mesh events: warning: {warning}", markup=False)
    return EXIT_OK


def _dlq(args: argparse.Namespace) -> int:
    from mesh.control import dlq

    if args.action in ("show", "replay") and args.seq is None and not (args.action == "replay" and args.all):
        raise CliError(f"`mesh dlq {args.action}` needs a sequence number (see `mesh dlq list`)", EXIT_USAGE)
    url = args.nats_url or os.environ.get("NATS_URL") or _running_nats_url(args)

    async def run() -> int:
        import nats

        try:
            client = await nats.connect(url.split(","), connect_timeout=5, max_reconnect_attempts=0)
        except Exception as error:
            raise CliError(f"cannot reach NATS at {url}: {error}", EXIT_UNREACHABLE) from None
        try:
            if args.action == "list":
                letters = await dlq.list_dead_letters(client, module=args.module)
                if args.json:
                    console.print_json(json.dumps([render.dead_letter_fields(letter) for letter in letters]))
                else:
                    console.print(render.dead_letter_table(letters))
            elif args.action == "show":
                letter = await dlq.show(client, args.seq)
                console.print_json(json.dumps({**render.dead_letter_fields(letter), "headers": letter.headers}))
            elif args.all:
                letters = await dlq.list_dead_letters(client, module=args.module)
                for letter in letters:
                    await dlq.replay(client, letter.seq, keep=args.keep)
                console.print(f"mesh dlq: replayed {len(letters)} dead letters")
            else:
                letter = await dlq.replay(client, args.seq, keep=args.keep)
                console.print(f"mesh dlq: replayed {letter.seq} (event {letter.event.id}) to {letter.consumer}")
        except dlq.DeadLetterNotFound as error:
            raise CliError(str(error), EXIT_USAGE) from None
        finally:
            await client.close()
        return EXIT_OK

    return asyncio.run(run())


def _running_nats_url(args: argparse.Namespace) -> str:
    root = args.state_dir or Path(os.environ.get("MESH_STATE_DIR", ".mesh"))
    info = StateDir(root).read_info()
    if not info or not info.get("nats_url"):
        raise CliError(
            f"no running mesh in {root} to take the NATS URL from; pass --nats-url or set NATS_URL", EXIT_USAGE
        )
    return info["nats_url"]


# --- operating ---------------------------------------------------------------------------


def _reload(args: argparse.Namespace) -> int:
    request = coordinator_pb2.ReloadModuleRequest(name=args.name)
    if args.config_json:
        try:
            overrides = json.loads(args.config_json)
        except ValueError as error:
            raise CliError(f"--config is not JSON: {error}", EXIT_USAGE) from None
        if not isinstance(overrides, dict):
            raise CliError('--config must be a JSON object, e.g. \'{"greeting": "Hi"}\'', EXIT_USAGE)
        config = struct_pb2.Struct()
        config.update(overrides)
        request.config.CopyFrom(config)
    address = _coordinator_address(args)
    reply = _call(address, lambda stub: stub.ReloadModule(request, timeout=300))
    console.print(f"mesh reload: {reply.status.name} is {render.state_name(reply.status.state)}")
    return EXIT_OK


def _restart(args: argparse.Namespace) -> int:
    address = _coordinator_address(args)
    reply = _call(
        address, lambda stub: stub.RestartModule(coordinator_pb2.RestartModuleRequest(name=args.name), timeout=300)
    )
    console.print(
        f"mesh restart: {reply.status.name} is {render.state_name(reply.status.state)} at {reply.status.address} "
        f"(pid {reply.status.pid})"
    )
    return EXIT_OK


def _tenancy(address: str, call: Callable[[tenancy_pb2_grpc.TenancyStub], Awaitable[T]]) -> T:
    return _call(address, call, tenancy_pb2_grpc.TenancyStub)


def _tenant(args: argparse.Namespace) -> int:
    address = _coordinator_address(args)
    if args.tenant_action == "list":
        reply = _tenancy(
            address, lambda t: t.ListTenantModules(tenancy_pb2.ListTenantModulesRequest(tenant=args.tenant))
        )
        console.print(render.tenant_table(args.tenant, reply.modules))
        return EXIT_OK
    if args.tenant_action == "enable":
        request = tenancy_pb2.EnableModuleRequest(
            tenant=args.tenant, module=args.module, with_dependencies=args.with_dependencies, actor=args.actor
        )
        reply = _tenancy(address, lambda t: t.EnableModule(request))
    else:
        request = tenancy_pb2.DisableModuleRequest(
            tenant=args.tenant, module=args.module, cascade=args.cascade, actor=args.actor
        )
        reply = _tenancy(address, lambda t: t.DisableModule(request))
    changed = ", ".join(m.module for m in reply.changed) or "nothing (already so)"
    console.print(f"mesh tenant {args.tenant_action}: {args.tenant}: {changed}")
    return EXIT_OK


def _flags(args: argparse.Namespace) -> int:
    address = _coordinator_address(args)
    if args.flag_action == "set":
        request = tenancy_pb2.SetFeatureFlagRequest(
            tenant=args.tenant, flag=args.flag, enabled=args.value == "on", actor=args.actor
        )
        reply = _tenancy(address, lambda t: t.SetFeatureFlag(request))
        console.print(f"mesh flags: {args.tenant}: {reply.flag.name} is {'on' if reply.flag.enabled else 'off'}")
        return EXIT_OK
    reply = _tenancy(address, lambda t: t.GetFeatureFlags(tenancy_pb2.GetFeatureFlagsRequest(tenant=args.tenant)))
    for flag in reply.flags:
        console.print(f"{flag.name}\t{'on' if flag.enabled else 'off'}\t{flag.changed_by}")
    return EXIT_OK


def _config(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    address = _coordinator_address(args)
    if args.config_action == "set":
        try:
            overrides = json.loads(args.json)
        except ValueError as error:
            raise CliError(f"the override is not JSON: {error}", EXIT_USAGE) from None
        if not isinstance(overrides, dict):
            raise CliError('the override must be a JSON object, e.g. \'{"currency": "EUR"}\'', EXIT_USAGE)
        config = struct_pb2.Struct()
        config.update(overrides)
        request = tenancy_pb2.SetConfigRequest(
            module=args.module, tenant=args.tenant, company=args.company, config=config, actor=args.actor
        )
        reply = _tenancy(address, lambda t: t.SetConfig(request))
        console.print_json(json_format.MessageToJson(reply.effective))
        return EXIT_OK
    if args.config_action == "get":
        request = tenancy_pb2.GetConfigRequest(module=args.module, tenant=args.tenant, company=args.company)
        reply = _tenancy(address, lambda t: t.GetConfig(request))
        console.print_json(json_format.MessageToJson(reply.config))
        return EXIT_OK
    request = tenancy_pb2.GetEffectiveConfigRequest(module=args.module, tenant=args.tenant, company=args.company)
    reply = _tenancy(address, lambda t: t.GetEffectiveConfig(request))
    console.print(render.config_table(json_format.MessageToDict(reply.config), reply.sources))
    return EXIT_OK


# --- talking to the coordinator --------------------------------------------------------


def _coordinator_address(args: argparse.Namespace) -> str:
    if getattr(args, "coordinator", None):
        return args.coordinator
    if os.environ.get("MESH_COORDINATOR"):
        return os.environ["MESH_COORDINATOR"]
    root = getattr(args, "state_dir", None) or Path(os.environ.get("MESH_STATE_DIR", ".mesh"))
    info = StateDir(root).read_info()
    return info["address"] if info and info.get("address") else DEFAULT_LISTEN


def _call(
    address: str, call: Callable[[Any], Awaitable[T]], stub_class: Any = coordinator_pb2_grpc.CoordinatorStub
) -> T:
    async def run() -> T:
        async with grpc.aio.insecure_channel(address) as channel:
            return await call(stub_class(channel))

    try:
        return asyncio.run(run())
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            raise CliError(f"no coordinator answers at {address}; is `mesh up` running?", EXIT_UNREACHABLE) from None
        info = error_info(error)
        reason = f" [{info.reason}]" if info else ""
        code = (
            EXIT_USAGE if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND) else EXIT_FAILED
        )
        raise CliError(f"{error.details()}{reason}", code) from None


if __name__ == "__main__":
    raise SystemExit(main())
