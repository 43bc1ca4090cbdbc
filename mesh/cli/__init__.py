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
    mesh creds     issue | grpcurl-flags: credentials from the mesh CA
    mesh token     issue: a bearer token that proves a tenant

Exit codes: 0 success; 1 the operation failed (or, for `status`, a module is not
running; for `health`, the mesh is degraded); 2 bad usage or invalid input (for `health`,
the mesh is unhealthy); 3 the coordinator is not reachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib import metadata

from mesh.cli import creds, events, inspection, lifecycle, logs, nats, new, operations, tenancy, tokens
from mesh.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, error_console
from mesh.protocol.logs import configure_logging

# In the order `mesh --help` lists them.
COMMAND_GROUPS = (lifecycle, inspection, operations, events, tenancy, creds, tokens, nats, new, logs)


def main(argv: list[str] | None = None) -> int:
    """Run the `mesh` command.

    Args:
        argv: The arguments after `mesh`; None means the process's own.

    Returns:
        The exit code (see the module's docstring).
    """
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
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CliError as error:
        error_console.print(f"mesh {args.command}: {error}", markup=False)
        return error.code
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`mesh graph | head`): not an error of ours. Python would
        # report the failed flush of stdout at exit, so point stdout at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesh", description="Module Mesh: run and inspect a mesh of modules.")
    parser.add_argument("--version", action="version", version=f"mesh {metadata.version('module-mesh')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser
