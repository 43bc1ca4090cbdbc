"""`mesh new NAME`: a new module that runs as it is — manifest, proto API, generated code,
the module class, a passing test and a README — to be filled in by its author.

The files carry, commented out, what an author adds next — a dependency, an event handler and
the test that feeds it an event — written so that uncommenting them keeps `make test` green.
Every line stays within 100 columns whatever the name's length (a long --description aside, in
module.toml), laid out as `ruff format` keeps it, so a new module passes `make lint` too."""

from __future__ import annotations

import importlib.util
import json
import keyword
import re
import sys
import textwrap
from pathlib import Path

from mesh.protocol.errors import excerpt
from mesh.protocol.identity import module_identity
from mesh.protocol.manifest import MAX_MODULE_NAME_CHARS

_KEBAB = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")  # fullmatch: `$` passes "name\n"
WIDTH = 100
"""The longest line the scaffold writes (ruff allows 120; the margin keeps edits within it)."""


class ScaffoldError(ValueError):
    """The module cannot be created; the message says why and what to do."""


def names(name: str) -> tuple[str, str]:
    """(Python package / proto package, service name) of a module name: my-thing -> (my_thing, MyThing)."""
    if not _KEBAB.fullmatch(name):
        raise ScaffoldError(
            f"{excerpt(name)} is not a kebab-case module name (lowercase letters, digits, single '-'), e.g. 'shipping'"
        )
    if len(name) > MAX_MODULE_NAME_CHARS:
        raise ScaffoldError(
            f"the module name {excerpt(name)} is too long: at most {MAX_MODULE_NAME_CHARS} characters, as its "
            f"certificate names it '{module_identity('').common_name}<name>' and X.509 allows 64 there"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise ScaffoldError(f"'{name}' is a Python keyword, which cannot name the module's package; choose another")
    if package in sys.stdlib_module_names:
        raise ScaffoldError(f"'{name}' would shadow Python's standard module '{package}'; choose another name")
    return package, "".join(part.capitalize() for part in name.split("-"))


def _refuse_shadowing(name: str, package: str) -> None:
    """A module's package must not take the place of one Python finds already (`sdk`, `mesh`,
    `grpc`, ...): every module imports its own package by that name. A namespace package (a
    plain folder, e.g. docs/) gives way to the module's, so it is no conflict."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        raise ScaffoldError(f"'{name}' would shadow the package '{package}' at {spec.origin}; choose another name")


def _check_description(description: str) -> None:
    """A description is one line of text: it goes into the manifest, docstrings and comments.

    Raises:
        ScaffoldError: It holds a line break or another control character.
    """
    if any(not character.isprintable() for character in description):
        raise ScaffoldError(
            f"--description {excerpt(description)} holds a line break or control character; give one line of text"
        )


def files(name: str, description: str) -> dict[str, str]:
    """The scaffold's files, relative to the module's folder."""
    package, service = names(name)
    _check_description(description)
    return {
        "__init__.py": _docstring(f"The `{name}` module (its API is in v1/{package}.proto).") + "\n",
        "module.toml": _manifest(name, package, service, description),
        f"v1/{package}.proto": _proto(name, package, service, description),
        "module.py": _module(name, package, service, description),
        "tests/__init__.py": _docstring(
            f"The `{name}` module's tests: a package ({package}.tests), so that pytest tells their files "
            "from others of the same name, e.g. tests/test_events.py of the project."
        )
        + "\n",
        f"tests/test_{package}.py": _test(name, package, service),
        "README.md": _readme(name, package, description),
    }


def _manifest(name: str, package: str, service: str, description: str) -> str:
    """module.toml. `services` is optional (the SDK takes them from the code), so it is left
    out for a name so long that the service's full name does not fit in a line."""
    services = f"services = [{json.dumps(f'{package}.v1.{service}')}]"
    return f"""# The graph facts of the module: the coordinator reads them before anything starts.
name = "{name}"
version = "0.1.0"
description = {json.dumps(description, ensure_ascii=False)}
{services + chr(10) if len(services) <= WIDTH else ""}
# A module this one calls (ctx.client) or must start after, e.g. orders; the module's tests
# then give the harness a stand-in for it (STAND_INS in tests/):
# [[dependencies]]
# name = "orders"
# version = "^1.0"

# The events it publishes (ctx.publish) and handles (@sdk.on in module.py):
# [events]
# publishes = ["{name}.updated"]
# subscribes = ["order.created"]

[run]
entry = "module:{service}"
"""


def _proto(name: str, package: str, service: str, description: str) -> str:
    return f"""syntax = "proto3";

{_comment("//", f"Package {package}.v1 is the API of the `{name}` module.")}
package {package}.v1;

{_comment("//", f"{service}: {description}")}
service {service} {{
  // Ping answers with a greeting, to show the module is up.
  rpc Ping(PingRequest) returns (PingResponse);
}}

// Asks for a greeting.
message PingRequest {{
  // Who asks.
  string name = 1;
}}

// A greeting.
message PingResponse {{
  // The greeting.
  string message = 1;
}}
"""


def _module(name: str, package: str, service: str, description: str) -> str:
    class_line = _fit("", f"class {service}(", ["sdk.Module", f"api_grpc.{service}Servicer"], "):")
    initialize = _fit("    ", "async def initialize(", ["self", f"ctx: sdk.Context[{service}Config]"], ") -> None:")
    return f'''{_docstring(f"The `{name}` module: {description}")}

from __future__ import annotations

from typing import Any

import grpc
from pydantic import BaseModel

import sdk
{_module_imports(package)}

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]


class {service}Config(BaseModel):
    """The module's configuration: defaults that the mesh, tenants and companies override."""

    greeting: str = "Hello"


{class_line}
    config_model = {service}Config

{initialize}
        self.ctx = ctx

    async def Ping(self, request: api.PingRequest, context: ServicerContext) -> api.PingResponse:
        return api.PingResponse(message=f"{{self.ctx.config.greeting}}, {{request.name or 'world'}}!")

    # A handler of another module's event: declare the type in module.toml ([events] subscribes),
    # uncomment the import of its payload type above and this method. The tests feed it an event
    # with harness.publish (see tests/).
    #
    # @sdk.on("order.created")
    # async def on_order_created(self, order: OrderCreated) -> None:
    #     self.ctx.logger.info("order %s: %d x %s", order.order_id, order.quantity, order.sku)
'''


def _test(name: str, package: str, service: str) -> str:
    stub = _fit("        ", "stub = harness.stub(", [f"api_grpc.{service}Stub"], ")")
    return f"""{_docstring(f"The `{name}` module through sdk.testing: a real server and a real nats-server.")}

from pathlib import Path

{_api_imports(package)}

MODULE = Path(__file__).resolve().parent.parent
# What serves in the place of each required dependency of module.toml, by name: servicers of
# its API (e.g. a subclass of orders_pb2_grpc.OrdersServicer overriding the methods this module
# calls; the rest answer UNIMPLEMENTED), or [] for none. With orders as a dependency, make it
# STAND_INS = {{"orders": []}}
STAND_INS: dict[str, list[object]] = {{}}


async def test_pings(module_harness):
    async with module_harness(MODULE, config={{"greeting": "Hi"}}, stand_ins=STAND_INS) as harness:
{stub}
        reply = await stub.Ping(api.PingRequest(name="Ada"))
    assert reply.message == "Hi, Ada!"


# With the order.created handler of module.py, feed it an event as the orders module would
# publish it; harness.publish returns once the handler is done, with its outcome:
#
# async def test_handles_a_new_order(module_harness):
#     from orders.events import OrderCreated
#     from sdk.testing import Verdict
#
#     async with module_harness(MODULE, stand_ins=STAND_INS) as harness:
#         order = OrderCreated(order_id="o-1", user_id="u-1", sku="book-42", quantity=2)
#         outcomes = await harness.publish("order.created", order)
#     assert outcomes["on_order_created"].verdict is Verdict.ACK
"""


def _readme(name: str, package: str, description: str) -> str:
    items = [
        "`module.toml`: the manifest (dependencies, events, feature flag, restart policy).",
        f"`v1/{package}.proto`: the module's API; after changing it run `make proto`.",
        "`module.py`: the module class: lifecycle hooks, gRPC methods, event handlers.",
        "`tests/`: tests through `sdk.testing` (`make test` runs them).",
    ]
    listed = "\n".join(_wrap(item, "- ", "  ") for item in items)
    run = f"Run it with the other modules: `make run`. Its tests alone: `.venv/bin/python -m pytest modules/{package}`."
    return f"# {name}\n\n{_wrap(description, '', '')}\n\n{listed}\n\n{_wrap(run, '', '')}\n"


def _module_imports(package: str) -> str:
    """The module's own imports, with the commented one of the example handler's payload type
    where ruff's isort wants it once uncommented: sorted by module among the others, after a
    blank line (isort keeps one above a comment)."""
    payload = (
        "# The payload type of another module's event comes from that module's package; uncomment\n"
        "# it with the order.created handler below:\n"
        "# from orders.events import OrderCreated"
    )
    api = _api_imports(package)
    return f"{api}\n\n{payload}" if f"{package}.v1" < "orders.events" else f"\n{payload}\n{api}"


def _api_imports(package: str) -> str:
    """The module's generated code under short names, so that no other line grows with the
    name's length; one import a line, as ruff's isort keeps aliased imports."""
    lines = []
    for generated, alias in (("pb2", "api"), ("pb2_grpc", "api_grpc")):
        imported = f"{package}_{generated} as {alias}"
        line = f"from {package}.v1 import {imported}"
        lines.append(line if len(line) <= WIDTH else f"from {package}.v1 import (\n    {imported},\n)")
    return "\n".join(lines)


def _fit(indent: str, opening: str, items: list[str], closing: str) -> str:
    """`opening` items `closing` on one line when it fits in WIDTH, else one item a line with a
    trailing comma (which `ruff format` keeps as it is)."""
    line = f"{indent}{opening}{', '.join(items)}{closing}"
    if len(line) <= WIDTH:
        return line
    inner = "".join(f"{indent}    {item},\n" for item in items)
    return f"{indent}{opening}\n{inner}{indent}{closing}"


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_long_words=False, break_on_hyphens=False
    )


def _comment(marker: str, text: str) -> str:
    return _wrap(text, f"{marker} ", f"{marker} ")


def _docstring(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"""' + textwrap.fill(escaped, WIDTH - 6, break_long_words=False, break_on_hyphens=False) + '"""'


def create(modules_dir: Path, name: str, description: str) -> Path:
    """Write the scaffold under `modules_dir` and generate its code; returns the module's folder."""
    package, _ = names(name)
    folder = modules_dir / package
    if folder.exists():
        raise ScaffoldError(f"{folder} exists already; choose another name or remove it")
    _refuse_shadowing(name, package)
    for relative, text in files(name, description).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    contracts = Path(__file__).resolve().parents[2] / "proto"  # mesh.v1, for modules that import it
    try:
        from mesh.protogen import generate_tree

        generate_tree(modules_dir, modules_dir, [contracts])
    except ModuleNotFoundError as error:
        raise ScaffoldError(
            f"the module was written to {folder}, but its code could not be generated ({error}): the "
            "install is incomplete; run make run (or make test) to reinstall, then make proto"
        ) from None
    return folder
