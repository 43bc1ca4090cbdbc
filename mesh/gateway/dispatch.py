"""Which method of a module a request under `/api/v1/<module>` calls, and how its request is
read and its answer written.

`POST /api/v1/<module>/<Method>` calls the method of that name, its JSON body the request;
any other request is matched against the module's REST routes (mesh.gateway.rest), the most
literal template first. A request no route takes is answered 404 with what there is, or 405
with the verbs its path takes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from mesh.gateway.edges import GENERIC_ROUTE, failure
from mesh.gateway.rest import RestRoute
from mesh.gateway.routes import ModuleRoutes
from mesh.gateway.transcoding import quoted, request_message, response_json
from mesh.protocol.reflection import ReflectedMethod


@dataclass(frozen=True)
class Target:
    """The method a request calls, and by which route."""

    method: ReflectedMethod
    rest: RestRoute | None = None
    """The REST route it came by; None: POST /api/v1/<module>/<Method>."""
    variables: Mapping[str, str] = field(default_factory=dict)
    """The REST route's path variables."""

    @property
    def route(self) -> str:
        """The route's template, for spans and logs."""
        return self.rest.template.text if self.rest is not None else GENERIC_ROUTE

    def request(self, body: bytes, query: Mapping[str, str]) -> Message:
        """The method's request (BadRequest when the body or query does not make one)."""
        if self.rest is None:
            return request_message(body, self.method.request_class)
        return self.rest.request(self.variables, list(query.items()), body)

    def answer(self, response: Message) -> Any:
        """The JSON of one response (or of its `response_body` field, on a REST route)."""
        return response_json(response) if self.rest is None else self.rest.answer(response)


def choose(request: web.Request, module: str, tail: str, routes: ModuleRoutes) -> Target | web.Response:
    """The method `request` calls (its path is /api/v1/<module><tail>), or the answer to give
    when there is none."""
    named = tail[1:] if tail.count("/") == 1 else ""
    if request.method == "POST" and named in routes.routes:
        return Target(routes.routes[named])
    path = request.rel_url.raw_path
    matched = [(rest, found) for rest in routes.rest if (found := rest.template.match(path)) is not None]
    fitting = [(rest, found) for rest, found in matched if rest.verb == request.method]
    if fitting:
        rest, variables = max(fitting, key=lambda pair: pair[0].template.literal_length)
        return Target(rest.method, rest, variables)
    if matched:
        verbs = ", ".join(sorted({rest.verb for rest, _found in matched}))
        refused = failure(405, "UNIMPLEMENTED", f"{request.method} {quoted(request.path)}: this route takes {verbs}")
        refused.headers["Allow"] = verbs
        return refused
    if named in routes.routes:
        return failure(
            405,
            "UNIMPLEMENTED",
            f"no route {request.method} {quoted(request.path)}; a module's methods are called with POST {GENERIC_ROUTE}"
            + _rest_listing(routes),
        )
    if request.method == "POST" and named:
        return failure(404, "NOT_FOUND", f"module {module} has no method {quoted(named)}{near(named, routes.named())}")
    return failure(
        404,
        "NOT_FOUND",
        f"module {module} has no route {request.method} {quoted(request.path)}; its methods are called with "
        f"POST {GENERIC_ROUTE}" + _rest_listing(routes),
    )


def near(name: str, known: list[str]) -> str:
    """ "; did you mean 'x'?" for a near miss among `known`, else the list of what there is."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; there are {', '.join(known)}" if known else "; there is none yet"


def _rest_listing(routes: ModuleRoutes) -> str:
    if not routes.rest:
        return ""
    return "; its REST routes are " + ", ".join(f"{rest.verb} {rest.template.text}" for rest in routes.rest)
