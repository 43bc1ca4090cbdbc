"""The `mesh` command line.

    mesh up        run the mesh of a modules folder until interrupted
    mesh down      stop a running mesh
    mesh status    the modules and their states
    mesh address   one module's gRPC address
    mesh call      call a module's gRPC method with JSON, like grpcurl (exit 64 + code on an RPC error)
    mesh health    the system health
    mesh graph     the dependency graph (text tree, --format mermaid or dot)
    mesh reload    re-initialize one module with fresh configuration
    mesh restart   replace one module's process
    mesh logs      module logs: one module's, or every module's with name prefixes (-f follows)
    mesh reset     remove a stopped mesh's state (module data, JetStream, logs; --all the CA too)
    mesh new       create a module (manifest, proto, code, test, README)
    mesh events    the event catalogue (--asyncapi FILE writes an AsyncAPI 3.0 document)
    mesh dlq       dead letters: list, show SEQ, replay SEQ
    mesh tenant    enable | disable | list: which modules serve a tenant
    mesh flags     set | get: feature flags of a tenant
    mesh config    set | get | effective: layered configuration of a module
    mesh creds     issue | grpcurl-flags: credentials from the mesh CA
    mesh token     issue: a bearer token that proves a tenant
    mesh gateway   serve the modules over HTTP/JSON (POST /api/v1/<module>/<Method>)
    mesh nats      permissions | users: each module's NATS permissions, a server config with users
    mesh registry  validate: a module folder checked as a package (manifest, files, size, digest)
    mesh completion bash | zsh: a shell completion script

Every command has --help; every read command has --json (shapes in docs/cli.md);
`mesh completion bash|zsh` prints a shell completion script.

Exit codes, the same for every command (docs/cli.md):
    0   success (`health`: healthy; `logs -f` ended by Ctrl-C)
    1   the operation failed: refused by the mesh, a module not answering, interrupted
        (`status`: a module is not running; `health`: the mesh is degraded)
    2   bad usage or input: an unknown command, option or name ("did you mean"), bad JSON,
        a path that cannot be written (`health`: the mesh is unhealthy)
    3   the coordinator (or, for `dlq`, the mesh's NATS) does not answer
    64+N  `mesh call` only: the call failed with gRPC status N, as grpcurl exits
Errors are one line on stderr, `mesh COMMAND: what; how to fix`; warnings too, with exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib import metadata

from mesh.cli import (
    call,
    creds,
    events,
    gateway,
    inspection,
    lifecycle,
    logs,
    nats,
    new,
    operations,
    registry,
    reset,
    tenancy,
    tokens,
)
from mesh.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, error_console
from mesh.cli.completion import register as register_completion
from mesh.protocol.logs import configure_logging

MAX_ERROR_CHARS = 400

# In the order `mesh --help` lists them.
COMMAND_GROUPS = (
    lifecycle,
    inspection,
    call,
    operations,
    events,
    tenancy,
    creds,
    tokens,
    nats,
    registry,
    new,
    logs,
    reset,
    gateway,
)


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
        for line in str(error).splitlines():  # several problems (a modules folder's) are a line each
            error_console.print(f"mesh {args.command_path}: {line}", markup=False)
        return error.code
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`mesh graph | head`): not an error of ours. Python would
        # report the failed flush of stdout at exit, so point stdout at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        if error.filename is None:
            error_console.print(f"mesh {args.command_path}: {_one_line(error)}", markup=False)
            return EXIT_FAILED
        # A path the command was given (or made from one) cannot be used: bad input.
        error_console.print(f"mesh {args.command_path}: {error.filename}: {error.strerror}", markup=False)
        return EXIT_USAGE
    except Exception as error:
        # The last line of defence: no traceback reaches a user, but a bug still says it is one.
        if os.environ.get("MESH_LOG_LEVEL", "").upper() == "DEBUG":
            raise
        error_console.print(
            f"mesh {args.command_path}: unexpected {type(error).__name__}: {_one_line(error)} (a bug in mesh: "
            "please report it; MESH_LOG_LEVEL=DEBUG shows the traceback)",
            markup=False,
        )
        return EXIT_FAILED


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh",
        description="Module Mesh: run and inspect a mesh of modules.",
        epilog="Exit codes: 0 success; 1 the operation failed; 2 bad usage or input; 3 the coordinator does "
        "not answer (details: docs/cli.md). `mesh COMMAND --help` shows a command's options and actions.",
    )
    parser.add_argument("--version", action="version", version=f"mesh {metadata.version('module-mesh')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    # Last: the completion script is generated from every command registered before it.
    register_completion(commands)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Give each (sub)command its words, e.g. "tenant enable", for the lines it prints."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(command_path=sub.prog.removeprefix(f"{parser.prog.split()[0]} "))
                _name_commands(sub)
