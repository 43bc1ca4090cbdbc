"""What every command group shares: exit codes, the consoles, the one-line error, the
common options, and the one place a gRPC failure becomes an exit code."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf import struct_pb2
from rich.console import Console

from mesh.control.config import DEFAULT_LISTEN, ConfigError, MeshConfig, load_config
from mesh.control.discovery import DiscoveredModule, DiscoveryError, discover
from mesh.control.statedir import StateDir
from mesh.protocol.errors import error_info
from mesh.protocol.pki import CredentialsError
from mesh.protocol.transport import INSECURE_ENV, Transport
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, tenancy_pb2_grpc

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# What each command group's `register` adds its subcommands to (argparse has no public name for it).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

T = TypeVar("T")

SUGGESTION_TIMEOUT_SECONDS = 5

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(Exception):
    """An error with its exit code; printed as one line, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def config_options(parser: argparse.ArgumentParser) -> None:
    """The options of commands that read the modules folder themselves, without a coordinator."""
    parser.add_argument("--config", type=Path, help="the mesh configuration file (default ./mesh.toml when present)")
    parser.add_argument("--modules", type=Path, help="the modules folder (default modules; env MESH_MODULES_DIR)")
    parser.add_argument("--state-dir", type=Path, help="where logs and state go (default .mesh; env MESH_STATE_DIR)")


def coordinator_option(parser: argparse.ArgumentParser) -> None:
    """The options of commands that ask a running coordinator."""
    parser.add_argument(
        "--coordinator",
        help="the coordinator's host:port (default: env MESH_COORDINATOR, then the one running "
        f"with the state folder .mesh, then {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--creds",
        type=Path,
        help="a folder with ca.pem, cert.pem and key.pem (default: env MESH_CREDS, then the admin credentials "
        "of the mesh running with the state folder)",
    )
    parser.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)


def load_mesh_config(args: argparse.Namespace, **extra: object) -> MeshConfig:
    """The mesh configuration from `--config`, `--modules`, `--state-dir` and `extra` overrides.

    Raises:
        CliError: The configuration is invalid (exit code 2).
    """
    try:
        return load_config(args.config, overrides={"modules_dir": args.modules, "state_dir": args.state_dir, **extra})
    except ConfigError as error:
        raise CliError(str(error), EXIT_USAGE) from None


def discovered_modules(args: argparse.Namespace) -> dict[str, DiscoveredModule]:
    """The modules of the folder the configuration names (`--modules`, `--config`).

    Raises:
        CliError: The configuration or a manifest is invalid (exit code 2), every problem listed.
    """
    config = load_mesh_config(args)
    try:
        return discover(config.modules_dir)
    except DiscoveryError as error:
        raise CliError("\n".join(error.lines), EXIT_USAGE) from None


def json_struct(text: str, what: str, example: str) -> struct_pb2.Struct:
    """A JSON object given on the command line, as a protobuf Struct.

    Args:
        text: The JSON text.
        what: What it is, for the error message, e.g. "--config".
        example: A valid value to show in the error message.

    Raises:
        CliError: The text is not a JSON object (exit code 2).
    """
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CliError(f"{what} is not JSON: {error}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a JSON object, e.g. '{example}'", EXIT_USAGE)
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def state_root(args: argparse.Namespace) -> Path:
    """The state folder: `--state-dir`, else env MESH_STATE_DIR, else `.mesh`."""
    root: Path | None = getattr(args, "state_dir", None)
    return root or Path(os.environ.get("MESH_STATE_DIR", ".mesh"))


def nats_url(args: argparse.Namespace) -> str | None:
    """`--nats-url`, else env NATS_URL, else the running mesh's (its state folder); None when
    there is none of them."""
    given: str | None = getattr(args, "nats_url", None) or os.environ.get("NATS_URL")
    if given:
        return given
    running: str | None = (StateDir(state_root(args)).read_info() or {}).get("nats_url")
    return running


@dataclass(frozen=True)
class CoordinatorAddress:
    """Where the coordinator is, and how to reach it (printed, it is its "host:port")."""

    address: str
    transport: Transport
    found_credentials: bool
    """False when no credentials were found and the call goes out plaintext as a last resort."""

    def __str__(self) -> str:
        return self.address


def coordinator_address(args: argparse.Namespace) -> CoordinatorAddress:
    """`--coordinator`, else env MESH_COORDINATOR, else the running mesh's, else the default address;
    with the credentials of `credentials_folder`.

    Raises:
        CliError: the credentials given cannot be read (exit code 2).
    """
    info = StateDir(state_root(args)).read_info() or {}
    given: str | None = getattr(args, "coordinator", None)
    address: str = given or os.environ.get("MESH_COORDINATOR") or info.get("address") or DEFAULT_LISTEN
    folder = credentials_folder(args, info)
    if folder is None:
        plaintext = info.get("tls") is False or os.environ.get(INSECURE_ENV, "") in ("1", "true", "yes")
        return CoordinatorAddress(address, Transport(None), found_credentials=plaintext)
    transport = Transport(folder)
    try:
        transport.credentials()
    except CredentialsError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    return CoordinatorAddress(address, transport, found_credentials=True)


def credentials_folder(args: argparse.Namespace, info: dict[str, Any]) -> Path | None:
    """`--creds`, else env MESH_CREDS, else the running mesh's admin credentials (coordinator.json),
    else the state folder's admin credentials; None when there are none (or the mesh is plaintext)."""
    given: Path | None = getattr(args, "creds", None)
    if given is not None:
        return given
    if os.environ.get("MESH_CREDS"):
        return Path(os.environ["MESH_CREDS"])
    if info.get("tls") is False:
        return None
    if info.get("credentials"):
        return Path(info["credentials"])
    default = state_root(args) / "pki" / "operators" / "admin"
    return default if (default / "cert.pem").exists() else None


@dataclass(frozen=True)
class MeshStubs:
    """The coordinator's two services on one channel, for a command that asks both."""

    coordinator: coordinator_pb2_grpc.CoordinatorStub
    tenancy: tenancy_pb2_grpc.TenancyStub


def call_coordinator(
    address: CoordinatorAddress, call: Callable[[coordinator_pb2_grpc.CoordinatorStub], Awaitable[T]]
) -> T:
    """One call on the Coordinator service at `address`; see `call_mesh` for the errors."""
    return call_mesh(address, lambda stubs: call(stubs.coordinator))


def call_tenancy(address: CoordinatorAddress, call: Callable[[tenancy_pb2_grpc.TenancyStub], Awaitable[T]]) -> T:
    """One call on the Tenancy service at `address`; see `call_mesh` for the errors."""
    return call_mesh(address, lambda stubs: call(stubs.tenancy))


def call_mesh(address: CoordinatorAddress, call: Callable[[MeshStubs], Awaitable[T]]) -> T:
    """Run `call` on the coordinator's stubs over a fresh channel; a gRPC failure becomes a CliError.

    Args:
        address: The coordinator and how to reach it.
        call: The calls to make, on one channel.

    Returns:
        What `call` returns.

    Raises:
        CliError: exit 3 when nothing answers, 2 for an invalid argument or an unknown name (with a
            near miss among the mesh's modules, "did you mean"), else 1; the message is the
            server's, with its reason code.
    """

    async def run() -> T:
        async with address.transport.channel(address.address) as channel:
            coordinator = coordinator_pb2_grpc.CoordinatorStub(channel)
            try:
                return await call(MeshStubs(coordinator, tenancy_pb2_grpc.TenancyStub(channel)))
            except grpc.aio.AioRpcError as error:
                raise _cli_error(address, error, await _suggestion(coordinator, error)) from None

    return asyncio.run(run())


async def _suggestion(coordinator: coordinator_pb2_grpc.CoordinatorStub, error: grpc.aio.AioRpcError) -> str:
    """A "did you mean" for an unknown module name close to one of the mesh's, else ""."""
    info = error_info(error)
    if info is None or info.reason != "MODULE_NOT_FOUND" or "did you mean" in (error.details() or ""):
        return ""
    try:
        listed = await coordinator.ListModules(coordinator_pb2.ListModulesRequest(), timeout=SUGGESTION_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError:
        return ""  # the suggestion is a courtesy: the error itself already says what is wrong
    return did_you_mean(info.metadata.get("module", ""), [module.name for module in listed.modules])


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` when `name` is close to one of `known`, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _cli_error(address: CoordinatorAddress, error: grpc.aio.AioRpcError, suggestion: str) -> CliError:
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        hint = (
            ""
            if address.found_credentials
            else " (no credentials found: pass --creds DIR or set MESH_CREDS for a mesh that serves mTLS)"
        )
        return CliError(f"no coordinator answers at {address}; is `mesh up` running?{hint}", EXIT_UNREACHABLE)
    info = error_info(error)
    reason = f" [{info.reason}]" if info else ""
    code = EXIT_USAGE if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND) else EXIT_FAILED
    return CliError(f"{error.details()}{reason}{suggestion}", code)


def write_file(path: Path, text: str, what: str) -> None:
    """Write `text` to a path the user gave.

    Raises:
        CliError: the path cannot be written (exit code 2), saying why.
    """
    try:
        path.write_text(text)
    except OSError as error:
        raise CliError(f"cannot write {what} to {path}: {error.strerror or error}", EXIT_USAGE) from None
