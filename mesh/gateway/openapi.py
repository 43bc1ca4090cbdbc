"""The gateway's OpenAPI 3.1 document (`GET /openapi.json`): a `POST` path for every method of
every running module (a server-streaming one answers `text/event-stream`), and each REST route
of their google.api.http annotations with its path and query parameters; with the JSON
Schemas of requests and responses written from the message descriptors the modules'
reflection gave (protobuf's canonical JSON mapping: lowerCamelCase names, 64-bit integers as
strings, enums by name, well-known types as their JSON forms), the error body every failure
has, and bearer authentication (optional on a public method).

Written here rather than by a generator tool: the descriptors come from reflection at run
time, where no .proto file and no protoc plugin exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from mesh.gateway.rest import RestRoute
from mesh.gateway.routes import ModuleRoutes
from mesh.protocol.reflection import ReflectedMethod

IsPublic = Callable[[str, ReflectedMethod], bool]
"""Whether a module's method is called without a bearer token."""
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")

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


def openapi_document(modules: list[ModuleRoutes], version: str, is_public: IsPublic) -> dict[str, Any]:
    """The OpenAPI document of the methods of `modules` but those that take a stream of
    requests (HTTP/JSON cannot send one).

    Args:
        modules: The routes of the running modules.
        version: The document's `info.version` (the mesh's).
        is_public: Whether a module's method is called without a bearer token.
    """
    schemas: dict[str, Any] = {ERROR_SCHEMA: _ERROR}
    paths: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    for routes in sorted(modules, key=lambda found: found.module):
        module = routes.module
        for name in routes.named():
            route = routes.routes[name]
            if route.method.client_streaming:
                continue
            _define(route.method.input_type, schemas)
            _define(route.method.output_type, schemas)
            operation = _operation(
                module, route, f"{module}.{route.method.full_name}", is_public(module, route), schemas
            )
            operation["requestBody"] = _body(_ref(route.method.input_type.full_name))
            paths[f"/api/v1/{module}/{name}"] = {"post": operation}
        for rest in routes.rest:
            if rest.method.method.client_streaming:
                continue
            path = _VARIABLE.sub(lambda found: "{" + found[1] + "}", rest.template.text)
            if "*" in path:
                left_out[f"{rest.verb} {rest.template.text}"] = "a wildcard OpenAPI paths cannot express"
                continue
            operation_id = f"{module}.{rest.method.method.full_name}.{rest.verb.lower()}.{rest.template.text}"
            _define(rest.method.method.output_type, schemas)
            operation = _operation(module, rest.method, operation_id, is_public(module, rest.method), schemas, rest)
            paths.setdefault(path, {})[rest.verb.lower()] = operation
        left_out |= {method: why for method, why in routes.rejected.items()}
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Module Mesh",
            "version": version,
            "description": "Every method of every running module, as the gateway routes it.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
    if left_out:
        document["info"]["x-routes-left-out"] = left_out
    return document


def _operation(
    module: str,
    route: ReflectedMethod,
    operation_id: str,
    public: bool,
    schemas: dict[str, Any],
    rest: RestRoute | None = None,
) -> dict[str, Any]:
    method = route.method
    error = {"content": {"application/json": {"schema": _ref(ERROR_SCHEMA)}}}
    answer = _ref(method.output_type.full_name)
    if rest is not None and rest.response_body:
        answer = _field_schema(method.output_type.fields_by_name[rest.response_body], schemas)
    if method.server_streaming:
        success = {
            "description": f"Server-Sent Events: each event's data a {method.output_type.full_name} in JSON; "
            "then an `end` event (an `error` event before it when the call failed once streaming)",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-data": answer}},
        }
    else:
        success = {
            "description": f"the {method.output_type.full_name}",
            "content": {"application/json": {"schema": answer}},
        }
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": f"{method.containing_service.full_name}/{method.name} of module {module}",
        "tags": [module],
        "responses": {
            "200": success,
            "default": {"description": "an error: its HTTP status, gRPC code and the mesh's reason", **error},
        },
    }
    if public:
        operation["security"] = [{}, {"bearer": []}]  # a token is not needed, and forwarded when sent
    if rest is not None:
        _rest_parameters(operation, rest, schemas)
    return operation


def _rest_parameters(operation: dict[str, Any], rest: RestRoute, schemas: dict[str, Any]) -> None:
    """The path variables, query parameters and body of a REST route."""
    request = rest.method.method.input_type
    parameters = [
        {"name": variable, "in": "path", "required": True, "schema": {"type": "string"}}
        for variable in rest.template.variables
    ]
    if rest.body != "*":
        bound = {variable.split(".")[0] for variable in rest.template.variables} | {rest.body}
        parameters += [
            {"name": field.json_name, "in": "query", "required": False, "schema": _field_schema(field, schemas)}
            for field in request.fields
            if field.name not in bound and field.json_name not in bound and field.message_type is None
        ]
    if parameters:
        operation["parameters"] = parameters
    if rest.body == "*":
        _define(request, schemas)
        operation["requestBody"] = _body(_ref(request.full_name))
    elif rest.body:
        operation["requestBody"] = _body(_field_schema(request.fields_by_name[rest.body], schemas))


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": schema}}}


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
