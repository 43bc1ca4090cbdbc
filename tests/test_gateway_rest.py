"""REST routes from google.api.http annotations (mesh.gateway.rest): path templates as
google/api/http.proto spells them, requests made of path variables, query and body, and every
bad template or parameter refused with what is wrong."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given
from hypothesis import strategies as st

from mesh.gateway.rest import PathTemplate, RestRoute, RouteRejected, rest_routes
from mesh.gateway.transcoding import BadRequest
from mesh.protocol.reflection import ReflectedMethod
from orders.v1 import orders_pb2

ORDERS = orders_pb2.DESCRIPTOR.services_by_name["Orders"]


@pytest.mark.parametrize(
    ("template", "path", "variables"),
    [
        ("/api/v1/orders/{id}", "/api/v1/orders/o-42", {"id": "o-42"}),
        ("/api/v1/orders/{id}", "/api/v1/orders/a%2Fb", {"id": "a/b"}),
        ("/api/v1/books/{name=shelves/*/books/*}", "/api/v1/books/shelves/1/books/2", {"name": "shelves/1/books/2"}),
        ("/api/v1/files/{path=**}", "/api/v1/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("/api/v1/orders/{id}:cancel", "/api/v1/orders/o-1:cancel", {"id": "o-1"}),
        ("/api/v1/orders/*/items", "/api/v1/orders/o-1/items", {}),
        ("/api/v1/orders/{order.id}", "/api/v1/orders/o-7", {"order.id": "o-7"}),
    ],
)
def test_a_template_matches_its_paths_and_binds_its_variables(
    template: str, path: str, variables: dict[str, str]
) -> None:
    assert PathTemplate.parse(template).match(path) == variables


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/api/v1/orders/{id}", "/api/v1/orders/o-1/items"),
        ("/api/v1/orders/{id}", "/api/v1/orders/"),
        ("/api/v1/orders/{id}:cancel", "/api/v1/orders/o-1"),
        ("/api/v1/books/{name=shelves/*}", "/api/v1/books/racks/1"),
    ],
)
def test_a_template_does_not_match_other_paths(template: str, path: str) -> None:
    assert PathTemplate.parse(template).match(path) is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("api/v1/orders", "does not begin with '/'"),
        ("/api/v1/orders/{id", "leaves a brace open"),
        ("/api/v1/orders/id}", "closes a brace"),
        ("/api/v1/{id}/{id}", "binds the field 'id' twice"),
        ("/api/v1/**/x", "'**' before its last segment"),
        ("/api/v1/{1d}", "names no field"),
        ("/api/v1/{a={b}}", "nests a variable"),
        ("/api/v1/or ders", "neither a literal nor a variable"),
    ],
)
def test_a_malformed_template_is_refused_with_what_is_wrong(template: str, problem: str) -> None:
    with pytest.raises(RouteRejected, match=problem.replace("*", r"\*")):
        PathTemplate.parse(template)


@given(st.text(alphabet="/{}*=:.ab1-%", max_size=30))
def test_any_template_text_parses_or_is_refused_and_nothing_else(text: str) -> None:
    try:
        template = PathTemplate.parse(text)
    except RouteRejected:
        return
    assert template.match(text) is None or isinstance(template.match(text), dict)


def test_the_orders_modules_annotations_are_its_rest_routes() -> None:
    routes = {
        (route.verb, route.template.text, route.body)
        for method in ORDERS.methods
        for route in rest_routes("orders", ReflectedMethod.of(method))
    }
    assert routes == {
        ("POST", "/api/v1/orders", "*"),
        ("GET", "/api/v1/orders/{id}", ""),
        ("GET", "/api/v1/orders/known-stock/{sku}", ""),
    }


def test_a_route_outside_the_modules_prefix_is_refused() -> None:
    with pytest.raises(RouteRejected, match="not under /api/v1/users, the module's prefix"):
        rest_routes("users", ReflectedMethod.of(ORDERS.methods_by_name["GetOrder"]))


def _route(template: str, body: str = "", verb: str = "GET", response_body: str = "") -> RestRoute:
    """A route whose request is a DescriptorProto: a string, a repeated string and a nested
    message with a bool, enough to try every way a field is filled."""
    method = ReflectedMethod(
        ORDERS.methods_by_name["GetOrder"], descriptor_pb2.DescriptorProto, descriptor_pb2.DescriptorProto
    )
    return RestRoute(verb, PathTemplate.parse(template), body, response_body, method)


def test_a_request_is_made_of_path_variables_query_parameters_and_body() -> None:
    route = _route("/api/v1/x/{name}")
    query = [("reservedName", "a"), ("reserved_name", "b"), ("options.deprecated", "true")]
    request = route.request({"name": "shelf"}, query, b"")
    assert request == descriptor_pb2.DescriptorProto(
        name="shelf", reserved_name=["a", "b"], options=descriptor_pb2.MessageOptions(deprecated=True)
    )
    whole = _route("/api/v1/x/{name}", body="*", verb="POST")
    assert whole.request({"name": "shelf"}, [], b'{"reservedName": ["c"]}').reserved_name == ["c"]
    one_field = _route("/api/v1/x/{name}", body="options", verb="PATCH")
    assert one_field.request({"name": "n"}, [], b'{"deprecated": true}').options.deprecated


@pytest.mark.parametrize(
    ("route", "query", "body", "problem"),
    [
        (_route("/api/v1/x/{name}"), [("nope", "1")], b"", "has no such field"),
        (_route("/api/v1/x/{name}"), [("options", "1")], b"", "is a message"),
        (_route("/api/v1/x/{name}"), [("options.deprecated", "yes")], b"", "true or false"),
        (_route("/api/v1/x/{name}"), [], b'{"name": "x"}', "takes no body"),
        (_route("/api/v1/x/{name}", body="*", verb="POST"), [("name", "y")], b"", "not the query"),
        (_route("/api/v1/x/{name}", body="*", verb="POST"), [], b"[1]", "not an object"),
        (_route("/api/v1/x/{name}", body="*", verb="POST"), [], b"{", "not a google.protobuf.DescriptorProto"),
        (_route("/api/v1/x/{name}", body="*", verb="POST"), [], b"\xff", "not UTF-8"),
        (_route("/api/v1/x/{name}", body="*", verb="POST"), [], b'{"reservedName": 5}', "not a google"),
    ],
)
def test_a_bad_parameter_or_body_is_refused_with_what_is_wrong(
    route: RestRoute, query: list[tuple[str, str]], body: bytes, problem: str
) -> None:
    with pytest.raises(BadRequest, match=problem):
        route.request({"name": "shelf"}, query, body)


def test_response_body_answers_with_one_field_of_the_response() -> None:
    route = _route("/api/v1/x/{name}", response_body="reserved_name")
    assert route.answer(descriptor_pb2.DescriptorProto(reserved_name=["a"])) == ["a"]
    assert route.answer(descriptor_pb2.DescriptorProto()) == []
