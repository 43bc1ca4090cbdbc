"""REST routes from `google.api.http` annotations in a module's .proto, as Envoy's transcoder
and grpc-gateway read them:

    rpc GetOrder(GetOrderRequest) returns (GetOrderResponse) {
      option (google.api.http) = {get: "/api/v1/orders/{id}"};
    }

`GET /api/v1/orders/o-42` then calls GetOrder with `{"id": "o-42"}`. Path variables (`{id}`,
`{name=shelves/*}`, `*`, `**`, a `:verb`), `body` ("*": the whole request is the JSON body; a
field's name: that field is; none: no body), query parameters for the other fields
(`?page_size=10&tags=a&tags=b`, `?filter.state=open`), `response_body` and
`additional_bindings` are supported.

A module's routes must lie under its own prefix, `/api/v1/<module>` (the gateway's namespace
of the module, as POST /api/v1/<module>/<Method> is): a route elsewhere could take another
module's paths or the gateway's own, so it is left out, and named in /openapi.json.

The template grammar is parsed here (google/api/http.proto spells it out): no well-kept Python
library parses it, and Envoy's and grpc-gateway's parsers are not Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from mesh.gateway.transcoding import BadRequest, quoted
from mesh.protocol.reflection import ReflectedMethod

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
"""The verbs an HttpRule names by a field of their own (any other is a `custom` rule)."""
TEXT_MESSAGES = frozenset(
    f"google.protobuf.{name}"
    for name in (
        "Timestamp",
        "Duration",
        "FieldMask",
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    )
)
"""The messages a query parameter or path variable may set whole: their JSON is a string."""
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()+,;=@%-]+")
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class RouteRejected(ValueError):
    """An annotation the gateway cannot serve: which, and why, in one line."""


@dataclass(frozen=True)
class PathTemplate:
    """A parsed path template: the regular expression of the paths it matches, and the field
    path each of its variables sets (in the order of the expression's groups)."""

    text: str
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    literal_length: int
    """How many characters of it are literal: a path two templates match goes to the more literal."""

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        """Raises RouteRejected when `text` is not a template (google/api/http.proto's grammar)."""
        if not text.startswith("/"):
            raise RouteRejected(f"path {text!r} does not begin with '/'")
        segments, verb = _split(text[1:], text)
        variables: list[str] = []
        expression = "/".join(
            _segment(segment, variables, text, last=i == len(segments) - 1) for i, segment in enumerate(segments)
        )
        if verb:
            expression += re.escape(":" + verb)
        literal = sum(len(segment) for segment in segments if _LITERAL.fullmatch(segment)) + len(verb)
        return cls(text, re.compile(f"/{expression}"), tuple(variables), literal)

    def match(self, raw_path: str) -> dict[str, str] | None:
        """The value of each variable (percent-decoded) when `raw_path` matches, else None."""
        found = self.pattern.fullmatch(raw_path)
        if found is None:
            return None
        return {field: unquote(value) for field, value in zip(self.variables, found.groups(), strict=True)}


def _split(text: str, template: str) -> tuple[list[str], str]:
    """The segments of `text` (split at the slashes outside braces) and its verb (after a
    colon in the last segment, outside braces)."""
    segments, current, depth = [], "", 0
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise RouteRejected(f"path {template!r} closes a brace it did not open")
        if char == "/" and depth == 0:
            segments.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise RouteRejected(f"path {template!r} leaves a brace open")
    last, _, verb = current.rpartition(":") if current.rfind(":") > current.rfind("}") else (current, "", "")
    segments.append(last)
    if verb and not _LITERAL.fullmatch(verb):
        raise RouteRejected(f"path {template!r} has a verb {verb!r} that is not a literal")
    return segments, verb


def _segment(segment: str, variables: list[str], template: str, *, last: bool) -> str:
    """The regular expression of one segment; a variable's field path is added to `variables`."""
    if segment == "*":
        return "[^/]+"
    if segment == "**":
        if not last:
            raise RouteRejected(f"path {template!r} has '**' before its last segment")
        return ".+"
    if segment.startswith("{") and segment.endswith("}"):
        field, equals, inner = segment[1:-1].partition("=")
        if not _FIELD_PATH.fullmatch(field):
            raise RouteRejected(f"path {template!r} has a variable {segment!r} that names no field")
        if field in variables:
            raise RouteRejected(f"path {template!r} binds the field {field!r} twice")
        variables.append(field)
        if not equals:
            return "([^/]+)"
        parts = inner.split("/")
        nested: list[str] = []
        expression = "/".join(
            _segment(part, nested, template, last=last and i == len(parts) - 1) for i, part in enumerate(parts)
        )
        if nested:
            raise RouteRejected(f"path {template!r} nests a variable in {segment!r}")
        return f"({expression})"
    if not _LITERAL.fullmatch(segment):
        raise RouteRejected(f"path {template!r} has a segment {segment!r} that is neither a literal nor a variable")
    return re.escape(segment)


@dataclass(frozen=True)
class RestRoute:
    """One REST route of a method: an HTTP verb and a path template, and where the request's
    fields come from."""

    verb: str
    template: PathTemplate
    body: str
    """"*": the whole request is the body; a field's name: that field is; "": no body."""
    response_body: str
    """The response's field that is the answer's body; "": the whole response."""
    method: ReflectedMethod

    def request(self, variables: Mapping[str, str], query: Sequence[tuple[str, str]], body: bytes) -> Message:
        """The method's request from the path's variables, the query and the body.

        Raises:
            BadRequest: the body or a parameter is not what the request's fields take.
        """
        message_class = self.method.request_class
        fields: dict[str, Any] = {}
        if self.body:
            parsed = _json_body(body, message_class.DESCRIPTOR.full_name)
            if self.body == "*":
                if parsed is not None and not isinstance(parsed, dict):
                    raise BadRequest(f"the body is not a {message_class.DESCRIPTOR.full_name} in JSON: not an object")
                fields = parsed or {}
            elif parsed is not None:
                fields[self.body] = parsed
        elif body.strip():
            raise BadRequest(f"{self.verb} {self.template.text} takes no body: send the fields as query parameters")
        if self.body != "*":
            for name, value in query:
                _set(fields, message_class.DESCRIPTOR, name, value, repeated_ok=True, where="query parameter")
        elif query:
            raise BadRequest(f"{self.verb} {self.template.text} takes its fields from the body, not the query")
        for name, value in variables.items():
            _set(fields, message_class.DESCRIPTOR, name, value, repeated_ok=False, where="path variable")
        message = message_class()
        try:
            json_format.ParseDict(fields, message)
        except json_format.ParseError as error:
            problem = " ".join(str(error).split())
            raise BadRequest(f"the request is not a {message_class.DESCRIPTOR.full_name}: {problem}") from None
        return message

    def answer(self, response: Message) -> Any:
        """What the answer's body holds: the response, or its `response_body` field."""
        body = json_format.MessageToDict(response)
        if not self.response_body:
            return body
        name = response.DESCRIPTOR.fields_by_name[self.response_body].json_name
        if name in body:
            return body[name]
        return json_format.MessageToDict(response, always_print_fields_with_no_presence=True).get(name)


def rest_routes(module: str, method: ReflectedMethod) -> list[RestRoute]:
    """The REST routes a method's `google.api.http` annotation declares (none without one).

    Raises:
        RouteRejected: the annotation is malformed, names fields the request lacks, or puts a
            route outside `/api/v1/<module>`.
    """
    options = method.method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [_route(module, method, binding) for binding in (rule, *rule.additional_bindings)]


def _route(module: str, method: ReflectedMethod, rule: http_pb2.HttpRule) -> RestRoute:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        raise RouteRejected(f"{method.method.full_name}: its google.api.http rule names no verb and path")
    if pattern == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
    else:
        verb, path = pattern.upper(), getattr(rule, pattern)
    prefix = f"/api/v1/{module}"
    if path != prefix and not path.startswith((prefix + "/", prefix + ":")):
        raise RouteRejected(f"{method.method.full_name}: {verb} {path} is not under {prefix}, the module's prefix")
    try:
        template = PathTemplate.parse(path)
    except RouteRejected as error:
        raise RouteRejected(f"{method.method.full_name}: {error}") from None
    request = method.request_class.DESCRIPTOR
    for field in (*template.variables, *([rule.body] if rule.body not in ("", "*") else [])):
        if _field(request, field) is None:
            raise RouteRejected(
                f"{method.method.full_name}: {request.full_name} has no field {field!r} ({verb} {path})"
            )
    response = method.response_class.DESCRIPTOR
    if rule.response_body and rule.response_body not in response.fields_by_name:
        raise RouteRejected(
            f"{method.method.full_name}: response_body {rule.response_body!r} is no field of {response.full_name}"
        )
    return RestRoute(verb, template, rule.body, rule.response_body, method)


def _field(message: Any, path: str) -> FieldDescriptor | None:
    """The field a dotted path names (by proto or JSON name), through nested messages."""
    fields = _fields(message, path)
    return fields[-1] if fields else None


def _fields(message: Any, path: str) -> list[FieldDescriptor]:
    """The fields along a dotted path (by proto or JSON name); empty when one is not there.
    (`message` is a message's descriptor: protobuf's stubs tell reflection's and generated
    ones apart.)"""
    found: list[FieldDescriptor] = []
    for name in path.split("."):
        if message is None:
            return []
        field = message.fields_by_name.get(name) or next((f for f in message.fields if f.json_name == name), None)
        if field is None:
            return []
        found.append(field)
        message = field.message_type
    return found


def _set(fields: dict[str, Any], message: Any, path: str, value: str, *, repeated_ok: bool, where: str) -> None:
    """Put `value` (text) at `path` of the request's JSON, converted to what its field takes."""
    along = _fields(message, path)
    if not along:
        raise BadRequest(f"{where} {quoted(path)}: {message.full_name} has no such field")
    field = along[-1]
    if field.message_type is not None and field.message_type.full_name not in TEXT_MESSAGES:
        raise BadRequest(f"{where} {quoted(path)} is a message: name one of its fields ({path}.<field>)")
    for outer in along[:-1]:  # by proto name, so that "pageSize" and "page_size" are one field
        if outer.is_repeated:
            raise BadRequest(f"{where} {quoted(path)} goes through the repeated field {outer.name!r}")
        nested = fields.setdefault(outer.name, {})
        if not isinstance(nested, dict):
            raise BadRequest(
                f"{where} {quoted(path)} sets a field of {outer.name!r}, which the body gives as no object"
            )
        fields = nested
    converted = _scalar(field, value, where, path)
    if field.is_repeated:
        if not repeated_ok:
            raise BadRequest(f"{where} {quoted(path)} is a repeated field")
        fields.setdefault(field.name, []).append(converted)
    else:
        fields[field.name] = converted


def _scalar(field: FieldDescriptor, value: str, where: str, path: str) -> Any:
    """A text value as protobuf's JSON mapping takes it for `field` (numbers may stay text)."""
    if field.type != FieldDescriptor.TYPE_BOOL:
        return value
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise BadRequest(f"{where} {quoted(path)} is true or false, not {quoted(value)}")


def _json_body(body: bytes, message_name: str) -> Any:
    """The parsed JSON body, None when there is none."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 (byte {error.start}); send JSON") from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise BadRequest(f"the body is not a {message_name} in JSON: {error}") from None
