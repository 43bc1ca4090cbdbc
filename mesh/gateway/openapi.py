"""The gateway's OpenAPI 3.1 document (`GET /openapi.json`): a `POST` path for every unary
method of every running module, with the JSON Schemas of its request and response written
from the message descriptors the modules' reflection gave (protobuf's canonical JSON mapping:
lowerCamelCase names, 64-bit integers as strings, enums by name, well-known types as their JSON
forms), the error body every failure has, and bearer authentication.

Written here rather than by a generator tool: the descriptors come from reflection at run
time, where no .proto file and no protoc plugin exist.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from mesh.gateway.routes import ModuleRoutes

OPENAPI_VERSION = "3.1.0"
ERROR_SCHEMA = "mesh.gateway.Error"

_INTEGER_32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
_INTEGER_64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer", "description": "the HTTP status"},
                "code": {"type": "string", "description": "the gRPC status code's name"},
                "message": {"type": "string", "description": "what went wrong, and how to fix it"},
                "reason": {"type": "string", "description": "the mesh's reason code (google.rpc.ErrorInfo)"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}


def openapi_document(modules: list[ModuleRoutes], version: str) -> dict[str, Any]:
    """The OpenAPI document of the unary methods of `modules`.

    Args:
        modules: The routes of the running modules.
        version: The document's `info.version` (the mesh's).
    """
    schemas: dict[str, Any] = {ERROR_SCHEMA: _ERROR}
    paths: dict[str, Any] = {}
    for routes in sorted(modules, key=lambda found: found.module):
        for name in routes.named():
            route = routes.routes[name]
            if not route.unary:
                continue
            _define(route.method.input_type, schemas)
            _define(route.method.output_type, schemas)
            paths[f"/api/v1/{routes.module}/{name}"] = {"post": _operation(routes.module, name, route.method)}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Module Mesh",
            "version": version,
            "description": "Every unary method of every running module, as the gateway routes it.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(module: str, name: str, method: Any) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": _ref(ERROR_SCHEMA)}}}
    return {
        "operationId": f"{module}.{method.full_name}",
        "summary": f"{method.containing_service.full_name}/{method.name} of module {module}",
        "tags": [module],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _ref(method.input_type.full_name)}},
        },
        "responses": {
            "200": {
                "description": f"the {method.output_type.full_name}",
                "content": {"application/json": {"schema": _ref(method.output_type.full_name)}},
            },
            "default": {"description": "an error: its HTTP status, gRPC code and the mesh's reason", **error},
        },
    }


def _define(message: Descriptor, schemas: dict[str, Any]) -> None:
    """Put the schema of `message`, and of every message it holds, into `schemas`."""
    if message.full_name in schemas or message.full_name in _WELL_KNOWN:
        return
    properties: dict[str, Any] = {}
    schemas[message.full_name] = {"type": "object", "properties": properties, "additionalProperties": False}
    for field in message.fields:
        properties[field.json_name] = _field_schema(field, schemas)


def _field_schema(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        return {"type": "object", "additionalProperties": _single(entry.fields_by_name["value"], schemas)}
    single = _single(field, schemas)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _single(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"type": "number"}
    if kind in _INTEGER_32:
        return {"type": "integer", "format": "int32"}
    if kind in _INTEGER_64:
        return {"type": "string", "format": "int64"}
    if kind == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if kind == FieldDescriptor.TYPE_STRING:
        return {"type": "string"}
    if kind == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if field.enum_type is not None:
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    message = field.message_type
    if message is None:  # no other kind of field exists (groups are messages too)
        raise ValueError(f"field {field.full_name} has a type the JSON mapping does not know: {kind}")
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    _define(message, schemas)
    return _ref(message.full_name)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
