"""Errors as values: a reason code, a message that says what, where and how to fix it,
and the one gRPC status each reason maps to.

Every mesh error a caller can receive travels as a gRPC status with a
`google.rpc.ErrorInfo` detail (domain "mesh.v1"), so clients in any language read the
reason without parsing messages.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mesh.v1 import errors_pb2

ERROR_DOMAIN = "mesh.v1"
_REASON_PREFIX = "ERROR_REASON_"

# The single place where a reason becomes a gRPC status code.
_STATUS_OF_REASON: dict[str, grpc.StatusCode] = {
    "MODULE_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "MODULE_DEPENDENCY_MISSING": grpc.StatusCode.FAILED_PRECONDITION,
    "MODULE_HAS_DEPENDENTS": grpc.StatusCode.FAILED_PRECONDITION,
    "CIRCULAR_DEPENDENCY": grpc.StatusCode.FAILED_PRECONDITION,
    "MODULE_LOAD_FAILED": grpc.StatusCode.INTERNAL,
    "MODULE_DISABLED_FOR_TENANT": grpc.StatusCode.PERMISSION_DENIED,
    "INVALID_MANIFEST": grpc.StatusCode.INVALID_ARGUMENT,
    "VERSION_CONSTRAINT_UNMET": grpc.StatusCode.FAILED_PRECONDITION,
    "ILLEGAL_TRANSITION": grpc.StatusCode.FAILED_PRECONDITION,
    "HOOK_FAILED": grpc.StatusCode.INTERNAL,
    "INVALID_CONFIG": grpc.StatusCode.INVALID_ARGUMENT,
    "TENANT_REQUIRED": grpc.StatusCode.INVALID_ARGUMENT,
    "FEATURE_DISABLED": grpc.StatusCode.PERMISSION_DENIED,
    "UNDECLARED_DEPENDENCY": grpc.StatusCode.FAILED_PRECONDITION,
    "UNDECLARED_EVENT": grpc.StatusCode.FAILED_PRECONDITION,
    "INVALID_EVENT": grpc.StatusCode.INVALID_ARGUMENT,
    "MODULE_ALREADY_REGISTERED": grpc.StatusCode.ALREADY_EXISTS,
    "MODULE_SKIPPED": grpc.StatusCode.FAILED_PRECONDITION,
    "TIMEOUT": grpc.StatusCode.DEADLINE_EXCEEDED,
    "MODULE_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "INVALID_TENANT": grpc.StatusCode.INVALID_ARGUMENT,
}

REASONS = frozenset(
    name.removeprefix(_REASON_PREFIX) for name in errors_pb2.ErrorReason.keys() if name != "ERROR_REASON_UNSPECIFIED"
)


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
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        status: grpc.StatusCode | None = None,
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown mesh error reason {reason!r}; known: {sorted(REASONS)}")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.status = status or _STATUS_OF_REASON[reason]

    def to_grpc_status(self) -> grpc.Status:
        """The gRPC status with the ErrorInfo detail, ready for `context.abort`."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        code = getattr(code_pb2, self.status.name)
        return rpc_status.to_status(status_pb2.Status(code=code, message=self.message, details=[detail]))

    async def abort(self, context: grpc.aio.ServicerContext) -> None:
        """End the current call with this error (raises, like `context.abort`)."""
        status = self.to_grpc_status()
        await context.abort(status.code, status.details, status.trailing_metadata)


async def answer(context: grpc.aio.ServicerContext, work: Any) -> Any:
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
    trailing = error.trailing_metadata() or ()
    for key, value in trailing:
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                return info
    return None
