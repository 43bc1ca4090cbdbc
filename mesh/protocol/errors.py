"""Errors as values: a reason code, a message that says what, where and how to fix it,
and the one gRPC status each reason maps to.

Every mesh error a caller can receive travels as a gRPC status with a
`google.rpc.ErrorInfo` detail (domain "mesh.v1"), so clients in any language read the
reason without parsing messages.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast, overload

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mesh.v1 import errors_pb2

ERROR_DOMAIN = "mesh.v1"
_REASON_PREFIX = "ERROR_REASON_"

# An error travels in trailing metadata twice (grpc-message, percent-encoded, and the
# base64 grpc-status-details-bin), and a client refuses trailers over ~8 KB with
# RESOURCE_EXHAUSTED. These caps keep the worst case (non-ASCII text) under it.
MAX_MESSAGE_BYTES = 800
MAX_METADATA_ENTRIES = 8
MAX_METADATA_KEY_BYTES = 64
MAX_METADATA_VALUE_BYTES = 128
EXCERPT_CHARS = 40
"""How much of a user's input a message quotes (see `excerpt`)."""

T = TypeVar("T")


class Reason(enum.StrEnum):
    """The machine-readable reasons of mesh.v1.ErrorReason, without the ERROR_REASON_ prefix.

    Mirrors errors.proto (a test compares the two); a MeshError takes a Reason or its name.
    """

    MODULE_NOT_FOUND = "MODULE_NOT_FOUND"
    MODULE_DEPENDENCY_MISSING = "MODULE_DEPENDENCY_MISSING"
    MODULE_HAS_DEPENDENTS = "MODULE_HAS_DEPENDENTS"
    CIRCULAR_DEPENDENCY = "CIRCULAR_DEPENDENCY"
    MODULE_LOAD_FAILED = "MODULE_LOAD_FAILED"
    MODULE_DISABLED_FOR_TENANT = "MODULE_DISABLED_FOR_TENANT"
    INVALID_MANIFEST = "INVALID_MANIFEST"
    VERSION_CONSTRAINT_UNMET = "VERSION_CONSTRAINT_UNMET"
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"
    HOOK_FAILED = "HOOK_FAILED"
    INVALID_CONFIG = "INVALID_CONFIG"
    TENANT_REQUIRED = "TENANT_REQUIRED"
    FEATURE_DISABLED = "FEATURE_DISABLED"
    UNDECLARED_DEPENDENCY = "UNDECLARED_DEPENDENCY"
    UNDECLARED_EVENT = "UNDECLARED_EVENT"
    INVALID_EVENT = "INVALID_EVENT"
    MODULE_ALREADY_REGISTERED = "MODULE_ALREADY_REGISTERED"
    MODULE_SKIPPED = "MODULE_SKIPPED"
    TIMEOUT = "TIMEOUT"
    MODULE_UNAVAILABLE = "MODULE_UNAVAILABLE"
    INVALID_TENANT = "INVALID_TENANT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    ACCESS_DENIED = "ACCESS_DENIED"


# The single place where a reason becomes a gRPC status code.
_STATUS_OF_REASON: dict[Reason, grpc.StatusCode] = {
    Reason.MODULE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.MODULE_DEPENDENCY_MISSING: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.MODULE_HAS_DEPENDENTS: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.CIRCULAR_DEPENDENCY: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.MODULE_LOAD_FAILED: grpc.StatusCode.INTERNAL,
    Reason.MODULE_DISABLED_FOR_TENANT: grpc.StatusCode.PERMISSION_DENIED,
    Reason.INVALID_MANIFEST: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.VERSION_CONSTRAINT_UNMET: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ILLEGAL_TRANSITION: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.HOOK_FAILED: grpc.StatusCode.INTERNAL,
    Reason.INVALID_CONFIG: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.TENANT_REQUIRED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FEATURE_DISABLED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.UNDECLARED_DEPENDENCY: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.UNDECLARED_EVENT: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.INVALID_EVENT: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.MODULE_ALREADY_REGISTERED: grpc.StatusCode.ALREADY_EXISTS,
    Reason.MODULE_SKIPPED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    Reason.MODULE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.INVALID_TENANT: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.ACCESS_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}

PROTO_REASONS = frozenset(
    name.removeprefix(_REASON_PREFIX) for name in errors_pb2.ErrorReason.keys() if name != "ERROR_REASON_UNSPECIFIED"
)
"""The reasons errors.proto defines (what `Reason` must mirror)."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short, one-line, quoted form of user input for a message: its repr (control
    characters escaped), cut in the middle past `limit` characters with the input's length,
    so a huge or multi-line input never floods a message, a log line or gRPC metadata.

    Args:
        value: The input as given (a string, bytes, a number ...).
        limit: The most characters of the repr shown.

    Returns:
        e.g. `'acme\\n'`, or `'aaaaaaaaaa…aaaaaaaaaa' (100000 chars)` for a long input.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    half = max(limit // 2, 1)
    if isinstance(value, bytes):
        size = f"{len(value)} bytes"
    elif isinstance(value, str):
        size = f"{len(value)} chars"
    else:
        size = f"{len(text)} chars written out"
    return f"{text[:half]}…{text[-half:]} ({size})"


def _cut(text: str, max_bytes: int) -> str:
    """`text` within `max_bytes` of UTF-8, its middle cut out (the end of a message usually
    says how to fix it, so both ends stay)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    note = f" …[{len(encoded) - max_bytes} bytes cut]… "
    keep = max(max_bytes - len(note.encode("utf-8")), 2) // 2
    head = encoded[:keep].decode("utf-8", errors="ignore")
    tail = encoded[-keep:].decode("utf-8", errors="ignore")
    return f"{head}{note}{tail}"


def _bounded_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """ErrorInfo metadata within the caps: its first entries, keys and values cut."""
    bounded: dict[str, str] = {}
    for key, value in list((metadata or {}).items())[:MAX_METADATA_ENTRIES]:
        bounded[_cut(str(key), MAX_METADATA_KEY_BYTES)] = _cut(str(value), MAX_METADATA_VALUE_BYTES)
    return bounded


def status_of(reason: Reason | str) -> grpc.StatusCode:
    """The gRPC status code a reason travels with."""
    return _STATUS_OF_REASON[Reason(reason)]


class MeshError(Exception):
    """An error with a reason code from mesh.v1.ErrorReason.

    Args:
        reason: The reason's name without the ERROR_REASON_ prefix, e.g. "MODULE_NOT_FOUND".
        message: What went wrong, where, and how to fix it; cut in the middle past
            MAX_MESSAGE_BYTES (quote user input with `excerpt`).
        metadata: The things involved, e.g. {"module": "orders"}; sent in ErrorInfo, each
            entry cut to the MAX_METADATA_* caps.
        status: Overrides the reason's usual gRPC status code.
    """

    def __init__(
        self,
        reason: Reason | str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        status: grpc.StatusCode | None = None,
    ) -> None:
        if reason not in Reason.__members__:
            raise ValueError(f"unknown mesh error reason {excerpt(reason)}; known: {sorted(Reason.__members__)}")
        message = _cut(message, MAX_MESSAGE_BYTES)
        super().__init__(message)
        self.reason = Reason(reason)
        self.message = message
        self.metadata = _bounded_metadata(metadata)
        self.status = status or _STATUS_OF_REASON[self.reason]

    def to_grpc_status(self) -> grpc.Status:
        """The gRPC status with the ErrorInfo detail, ready for `context.abort`."""
        info = error_details_pb2.ErrorInfo(reason=self.reason.value, domain=ERROR_DOMAIN, metadata=self.metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        code = getattr(code_pb2, self.status.name)
        return rpc_status.to_status(status_pb2.Status(code=code, message=self.message, details=[detail]))

    async def abort(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """End the current call with this error (raises, like `context.abort`)."""
        status = self.to_grpc_status()
        await context.abort(status.code, status.details, status.trailing_metadata)


@overload
async def answer(context: grpc.aio.ServicerContext[Any, Any], work: Awaitable[T]) -> T: ...
@overload
async def answer(context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], Awaitable[T]]) -> T: ...
@overload
async def answer(context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], T]) -> T: ...


async def answer(context: grpc.aio.ServicerContext[Any, Any], work: Any) -> Any:
    """Run a servicer's work; a MeshError ends the call with its status and ErrorInfo.

    Args:
        work: An awaitable, or a callable returning a value or an awaitable.
    """
    try:
        result = work() if callable(work) else work
        return await result if inspect.isawaitable(result) else result
    except MeshError as error:
        await error.abort(context)
        raise  # unreachable: abort raises


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The mesh ErrorInfo carried by a failed call, or None when it carries none.

    Works for both `grpc.RpcError` (sync) and `grpc.aio.AioRpcError`.
    """
    # grpc-stubs types metadata as objects with .key/.value; at run time the sync API gives
    # (key, value) named tuples and grpc.aio plain tuples, so unpacking serves both.
    trailing = cast("Iterable[tuple[str, Any]]", error.trailing_metadata() or ())
    for key, value in trailing:
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                return info
    return None
