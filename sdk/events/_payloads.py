"""Payloads to bytes and back: a pydantic model travels as JSON, a protobuf message as its
binary encoding, `bytes` as they are, anything else as JSON through a pydantic TypeAdapter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message as ProtoMessage
from pydantic import BaseModel, TypeAdapter

PROTOBUF = "application/protobuf"
OCTET_STREAM = "application/octet-stream"
JSON = "application/json"


@dataclass(frozen=True)
class PayloadCodec:
    """Turns one payload type into bytes and back."""

    payload_type: Any
    content_type: str

    def encode(self, payload: Any) -> bytes:
        """The wire bytes of `payload`."""
        if isinstance(payload, BaseModel):
            return payload.model_dump_json().encode()
        if isinstance(payload, ProtoMessage):
            return payload.SerializeToString()
        if isinstance(payload, bytes | bytearray):
            return bytes(payload)
        return json.dumps(TypeAdapter(Any).dump_python(payload, mode="json")).encode()

    def decode(self, body: bytes) -> Any:
        """The payload carried by `body`; raises pydantic's ValidationError or protobuf's
        DecodeError when it is not one."""
        kind = self.payload_type
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind.model_validate_json(body or b"null")
        if isinstance(kind, type) and issubclass(kind, ProtoMessage):
            return kind.FromString(body)
        if kind is bytes:
            return body
        return TypeAdapter(kind).validate_json(body or b"null")


def codec_for(payload_type: Any) -> PayloadCodec:
    """The codec of a handler's parameter type (or a published payload's type)."""
    if isinstance(payload_type, type) and issubclass(payload_type, ProtoMessage):
        return PayloadCodec(payload_type, PROTOBUF)
    if payload_type is bytes:
        return PayloadCodec(bytes, OCTET_STREAM)
    return PayloadCodec(payload_type, JSON)


def content_type_of(payload: Any) -> str:
    """The `content-type` a published payload travels with."""
    if isinstance(payload, ProtoMessage):
        return PROTOBUF
    if isinstance(payload, bytes | bytearray):
        return OCTET_STREAM
    return JSON


def is_model_class(value: Any) -> bool:
    """Whether `value` can be declared in `event_models`: a pydantic model or protobuf message class."""
    return isinstance(value, type) and issubclass(value, (BaseModel, ProtoMessage))
