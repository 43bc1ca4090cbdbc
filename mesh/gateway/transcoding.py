"""JSON in, JSON out: a request body to the method's request message, its response message to
JSON (protobuf's canonical JSON mapping, `json_format`), and a failed call to an HTTP status
and a JSON error body that keeps the mesh's reason code."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from mesh.protocol.errors import error_info, excerpt

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
"""gRPC status to HTTP status, as google.rpc.Code documents it (and grpc-gateway and Envoy's
transcoder map it); 499 is "client closed request"."""


class BadRequest(Exception):
    """The request body is not the method's request in JSON: what is wrong, in one line."""


def request_message(body: bytes, message_class: type[Message]) -> Message:
    """The method's request from a JSON body; an empty body is the empty request.

    Raises:
        BadRequest: the body is not UTF-8 JSON, not an object, or a field is unknown or of
            the wrong type (json_format says which).
    """
    message = message_class()
    if not body.strip():
        return message
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 (byte {error.start}); send JSON") from None
    try:
        json_format.Parse(text, message)
    except json_format.ParseError as error:
        problem = " ".join(str(error).split())  # json_format's message spans lines
        raise BadRequest(f"the body is not a {message_class.DESCRIPTOR.full_name} in JSON: {problem}") from None
    except RecursionError:
        raise BadRequest("the body nests too deeply to be a request") from None
    return message


def response_json(message: Message) -> dict[str, Any]:
    """The response in protobuf's canonical JSON mapping (lowerCamelCase field names)."""
    return json_format.MessageToDict(message)


def error_body(status: int, code: str, message: str, reason: str = "", **more: Any) -> dict[str, Any]:
    """The JSON body of every error the gateway answers: `{"error": {...}}` with the HTTP
    status, the gRPC code's name, the message, and the mesh's reason code when there is one."""
    error: dict[str, Any] = {"status": status, "code": code, "message": message}
    if reason:
        error["reason"] = reason
    error.update(more)
    return {"error": error}


def call_failed(error: grpc.aio.AioRpcError, module: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of a call the module (or gRPC on its way) failed."""
    status = HTTP_STATUS.get(error.code(), 500)
    if error.code() is grpc.StatusCode.CANCELLED:
        # The gateway cancels no call it makes while its caller waits: a cancelled call was
        # cancelled on the module's side, by a process stopping with calls it had not begun
        # (gRPC answers those CANCELLED, grpc/grpc#41785). To the caller the module was
        # unavailable, and the call may be sent again.
        status = 503
    info = error_info(error)
    details = error.details() or error.code().name
    if info is None:
        return status, error_body(status, error.code().name, f"module {module}: {details}")
    return status, error_body(
        status, error.code().name, f"module {module}: {details}", info.reason, metadata=dict(info.metadata)
    )


def json_text(body: Any) -> str:
    """`body` as compact JSON text."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def quoted(value: str) -> str:
    """A value from the request, short enough to put in an error message."""
    return excerpt(value)
