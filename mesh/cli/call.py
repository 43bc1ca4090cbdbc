"""`mesh call`: call one of a module's gRPC methods with JSON, as grpcurl does, without looking
up its address or the flags of the mesh's credentials.

    mesh call users users.v1.Users/CreateUser -d '{"name": "Ada", "email": "ada@example.org"}'
    mesh call users CreateUser -d @ada.json --field user.id     only the field, for scripts
    mesh call orders GetOrder -d '{"id": "o-1"}' --tenant acme   as tenant acme (a bearer token)
    mesh call audit ListEntries --wait-for o-1                  until the answer mentions o-1

The coordinator names the module's address; the method's request and response types come from
the module's server reflection, so no .proto file is needed. An RPC error is printed as grpcurl
prints it (`ERROR:`, `Code:`, `Message:`, plus the mesh's reason code) and the exit code is
grpcurl's: 64 + the gRPC status code. Everything else exits as every mesh command does: 2 for bad
input (JSON, a header, an unknown module or method), 3 when no coordinator answers, 1 when the
module does not answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from mesh.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Commands,
    CoordinatorAddress,
    call_coordinator,
    coordinator_address,
    coordinator_option,
    error_console,
    state_root,
)
from mesh.cli._reflection import resolve
from mesh.control.credentials import operator_name
from mesh.protocol.errors import MeshError, error_info
from mesh.protocol.names import check_id
from mesh.protocol.pki import CredentialsError
from mesh.protocol.reflection import ReflectedMethod, go_name
from mesh.protocol.states import State
from mesh.protocol.tokens import AUTHORIZATION_METADATA, SIGNING_KEY_FILE, SigningKey, issue
from mesh.v1 import coordinator_pb2

Metadata: TypeAlias = tuple[tuple[str, str], ...]

RPC_EXIT_OFFSET = 64
"""grpcurl's: an RPC error exits 64 + its status code, apart from its own 1 and 2."""
DEFAULT_TIMEOUT_SECONDS = 60.0
CONNECT_SECONDS = 10.0
"""How long a module that does not accept the connection (gone, or not the mesh's TLS) is given."""
TOKEN_TTL_SECONDS = 300.0
"""A `--tenant` token serves one command."""
RETRIED_CODES = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE})
"""What `--wait-for` waits out: a record not there yet, a module restarting."""
FIRST_RETRY_SECONDS = 0.1
LONGEST_RETRY_SECONDS = 1.0


def register(commands: Commands) -> None:
    """Add `call` to the `mesh` command."""
    call = commands.add_parser(
        "call",
        help="call a module's gRPC method with JSON (like grpcurl; exit 64 + code on an RPC error)",
        description="Call a module's gRPC method with JSON and print the response as JSON, like grpcurl: "
        "the address comes from the coordinator, the types from the module's server reflection.",
    )
    coordinator_option(call)
    call.add_argument("module", help="the module's name, e.g. users")
    call.add_argument("method", help="pkg.Service/Method, or just Method when one service of the module has it")
    call.add_argument(
        "-d", "--data", help="the request as JSON; @FILE reads it from a file, @- from stdin (default {})"
    )
    call.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'KEY: VALUE'",
        help="request metadata, e.g. -H 'x-request-id: 42' (repeatable)",
    )
    call.add_argument("--tenant", help="call as this tenant: sends a bearer token signed by the mesh's key")
    call.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds for the whole command, waiting included (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    call.add_argument(
        "--wait-for",
        metavar="TEXT",
        help="repeat the call until its response contains TEXT (or --timeout passes); NOT_FOUND and "
        "UNAVAILABLE count as not yet: for effects of events, which arrive a moment later",
    )
    call.add_argument(
        "--field",
        metavar="PATH",
        help="print only this field of the response, e.g. user.id (strings bare, for shell variables)",
    )
    call.set_defaults(run=_call)


@dataclass(frozen=True)
class Deadline:
    """The end of the whole command, so that every step gets what is left of --timeout."""

    at: float

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)


def _call(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CliError(f"--timeout is {args.timeout:g}; expected seconds > 0", EXIT_USAGE)
    deadline = Deadline(time.monotonic() + args.timeout)
    request_json = _request_json(args.data)
    metadata = _metadata(args)
    coordinator = coordinator_address(args)
    address = _module_address(coordinator, args.module)
    with coordinator.transport.blocking_channel(address) as channel:
        _wait_until_connected(channel, args.module, address, deadline)
        target = resolve(channel, args.module, args.method)
        request = _request(request_json, target)
        if target.method.client_streaming:
            raise CliError(
                f"{target.method.full_name} takes a stream of requests; call it with grpcurl (docs/grpcurl.md)",
                EXIT_USAGE,
            )
        if target.method.server_streaming:
            if args.wait_for is not None:
                raise CliError(f"--wait-for needs a unary method; {target.method.full_name} streams", EXIT_USAGE)
            return _stream(channel, target, request, metadata, deadline, args.field)
        return _unary(channel, target, request, metadata, deadline, args)


def _request_json(data: str | None) -> str:
    """The request's JSON text: `-d` itself, or the file (@FILE) or stdin (@-) it names."""
    if data is None:
        return "{}"
    if data in ("@", "@-"):
        return sys.stdin.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_text()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise CliError(f"-d {data}: cannot read {data[1:]}: {reason}", EXIT_USAGE) from None
    return data


def _metadata(args: argparse.Namespace) -> Metadata:
    """`-H 'key: value'` as gRPC metadata, and the bearer token of `--tenant`."""
    metadata: list[tuple[str, str]] = []
    for header in args.header:
        key, colon, value = header.partition(":")
        key = key.strip().lower()
        if not colon or not key or any(c.isspace() for c in key):
            raise CliError(f"-H {header!r}: expected 'key: value', e.g. -H 'x-request-id: 42'", EXIT_USAGE)
        metadata.append((key, value.strip()))
    if args.tenant is not None:
        if any(key == AUTHORIZATION_METADATA for key, _ in metadata):
            raise CliError("--tenant sends its own authorization header; drop one of the two", EXIT_USAGE)
        metadata.append((AUTHORIZATION_METADATA, f"Bearer {_tenant_token(args)}"))
    return tuple(metadata)


def _tenant_token(args: argparse.Namespace) -> str:
    """A short-lived token for `--tenant`, signed by the key of the mesh's state folder."""
    try:
        check_id(args.tenant, "tenant")
        key = SigningKey.read(state_root(args) / "pki" / SIGNING_KEY_FILE)
    except MeshError as error:
        raise CliError(f"--tenant: {error.message}", EXIT_USAGE) from None
    except CredentialsError as error:
        raise CliError(f"--tenant: {error}", EXIT_USAGE) from None
    return issue(key, args.tenant, ttl_seconds=TOKEN_TTL_SECONDS, subject=operator_name())


def _module_address(coordinator: CoordinatorAddress, module: str) -> str:
    """The module's address, as the coordinator knows it."""
    reply: coordinator_pb2.GetModuleResponse = call_coordinator(
        coordinator, lambda stub: stub.GetModule(coordinator_pb2.GetModuleRequest(name=module), timeout=10)
    )
    if not reply.status.address:
        raise CliError(f"module {module} has no address ({State(reply.status.state).name}); see `mesh status`")
    return reply.status.address


def _wait_until_connected(channel: grpc.Channel, module: str, address: str, deadline: Deadline) -> None:
    """Connect first: reflection's calls carry no deadline of their own."""
    try:
        grpc.channel_ready_future(channel).result(timeout=min(deadline.remaining(), CONNECT_SECONDS))
    except grpc.FutureTimeoutError:
        raise CliError(
            f"module {module} does not answer at {address}; see `mesh status` and `mesh logs {module}`"
        ) from None


def _request(text: str, target: ReflectedMethod) -> Message:
    """The request message from JSON; unknown fields are refused, naming the field."""
    request = target.request_class()
    try:
        json_format.Parse(text, request)
    except json_format.ParseError as error:
        detail = " ".join(str(error).split())
        raise CliError(f"-d is not a valid {target.method.input_type.full_name}: {detail}", EXIT_USAGE) from None
    return request


def _unary(
    channel: grpc.Channel,
    target: ReflectedMethod,
    request: Message,
    metadata: Metadata,
    deadline: Deadline,
    args: argparse.Namespace,
) -> int:
    """One call, or with --wait-for as many as it takes for TEXT to appear in the response."""
    call = channel.unary_unary(
        target.path, request_serializer=_serialize, response_deserializer=target.response_class.FromString
    )
    pause = FIRST_RETRY_SECONDS
    while True:
        try:
            response = call(request, metadata=metadata, timeout=deadline.remaining())
        except grpc.RpcError as error:
            if args.wait_for is None or error.code() not in RETRIED_CODES or not _pause(pause, deadline):
                return _print_rpc_error(error)
        else:
            if args.wait_for is None or args.wait_for in _json(response):
                return _print(response, args.field)
            if not _pause(pause, deadline):
                _print(response, args.field)
                raise CliError(f"{args.wait_for!r} did not appear in the response within {args.timeout:g} s")
        pause = min(pause * 2, LONGEST_RETRY_SECONDS)


def _pause(seconds: float, deadline: Deadline) -> bool:
    """Sleep before the next try of --wait-for; False when the deadline leaves no time for one."""
    if deadline.remaining() <= seconds:
        return False
    time.sleep(seconds)
    return True


def _stream(
    channel: grpc.Channel,
    target: ReflectedMethod,
    request: Message,
    metadata: Metadata,
    deadline: Deadline,
    field: str | None,
) -> int:
    """A server stream: each response as it comes, until the stream or --timeout ends."""
    call = channel.unary_stream(
        target.path, request_serializer=_serialize, response_deserializer=target.response_class.FromString
    )
    try:
        for response in call(request, metadata=metadata, timeout=deadline.remaining()):
            _print(response, field)
    except grpc.RpcError as error:
        return _print_rpc_error(error)
    return EXIT_OK


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _json(message: Message) -> str:
    """grpcurl's JSON: the .proto's field names, fields at their default left out, two-space indent."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2, ensure_ascii=False)


def _print(response: Message, field: str | None) -> int:
    if field is None:
        print(_json(response))
        return EXIT_OK
    value: Any = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for step in field.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            keys = f"; it has {', '.join(value)}" if isinstance(value, dict) and value else ""
            raise CliError(f"--field {field}: the response has no {step!r} there{keys}", EXIT_USAGE)
    print(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return EXIT_OK


def _print_rpc_error(error: grpc.RpcError) -> int:
    """grpcurl's report of a failed call, plus the mesh's reason code; grpcurl's exit code."""
    code: grpc.StatusCode = error.code()
    info = error_info(error)
    reason = f"\n  Reason: {info.reason}" if info else ""
    error_console.print(
        f"ERROR:\n  Code: {go_name(code)}\n  Message: {error.details()}{reason}", markup=False, highlight=False
    )
    status: int = code.value[0]
    return RPC_EXIT_OFFSET + status
