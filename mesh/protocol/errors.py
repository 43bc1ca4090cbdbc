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


def status_of(reason: Reason | str) -> grpc.StatusCode:
    """The gRPC status code a reason travels with."""
    return _STATUS_OF_REASON[Reason(reason)]


class MeshError(Exception):
    """An error with a reason code from mesh.v1.ErrorReason.

    Args:
        reason: The reason's name without the ERROR_REASON_ prefix, e.g. "MODULE_NOT_FOUND".
        message: What went wrong, where, and how to fix it.
        metadata: The things involved, e.g. {"module": "orders"}; sent in ErrorInfo.
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
            raise ValueError(f"unknown mesh error reason {reason!r}; known: {sorted(Reason.__members__)}")
        super().__init__(message)
        self.reason = Reason(reason)
        self.message = message
        self.metadata = dict(metadata or {})
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
