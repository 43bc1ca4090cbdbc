"""`mesh new NAME`: a new module that runs as it is — manifest, proto API, generated code,
the module class, a passing test and a README — to be filled in by its author."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mesh.protocol.errors import excerpt

_KEBAB = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")  # fullmatch: `$` passes "name\n"


class ScaffoldError(ValueError):
    """The module cannot be created; the message says why and what to do."""


def names(name: str) -> tuple[str, str]:
    """(Python package / proto package, service name) of a module name: my-thing -> (my_thing, MyThing)."""
    if len(name) > 64 or not _KEBAB.fullmatch(name):
        raise ScaffoldError(
            f"{excerpt(name)} is not a kebab-case module name (at most 64 lowercase letters, digits, single '-'), "
            "e.g. 'shipping'"
        )
    package = name.replace("-", "_")
    if package in sys.stdlib_module_names:
        raise ScaffoldError(f"'{name}' would shadow Python's standard module '{package}'; choose another name")
    return package, "".join(part.capitalize() for part in name.split("-"))


def files(name: str, description: str) -> dict[str, str]:
    """The scaffold's files, relative to the module's folder."""
    package, service = names(name)
    return {
        "__init__.py": f'"""The `{name}` module (its API is in v1/{package}.proto)."""\n',
        "module.toml": f'''# The graph facts of the module: the coordinator reads them before anything starts.
name = "{name}"
version = "0.1.0"
description = "{description}"
services = ["{package}.v1.{service}"]

# [[dependencies]]
# name = "users"
# version = "^1.0"

# [events]
# publishes = ["{package}.created"]
# subscribes = ["order.created"]

[run]
entry = "module:{service}"
''',
        f"v1/{package}.proto": f"""syntax = "proto3";

// Package {package}.v1 is the API of the `{name}` module.
package {package}.v1;

// {service}: {description}
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
""",
        "module.py": f'''"""The `{name}` module: {description}"""

from __future__ import annotations

from typing import Any

import grpc
from pydantic import BaseModel

import sdk
from {package}.v1 import {package}_pb2, {package}_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]


class {service}Config(BaseModel):
    """The module's configuration (module defaults; the mesh, tenants and companies override it)."""

    greeting: str = "Hello"


class {service}(sdk.Module, {package}_pb2_grpc.{service}Servicer):
    config_model = {service}Config

    async def initialize(self, ctx: sdk.Context[{service}Config]) -> None:
        self.ctx = ctx

{_ping_signature(package)}
        return {package}_pb2.PingResponse(message=f"{{self.ctx.config.greeting}}, {{request.name or 'world'}}!")
''',
        f"tests/test_{package}.py": f'''"""The `{name}` module through sdk.testing, with a real nats-server."""

from pathlib import Path

from mesh.protocol.errors import excerpt

import pytest

from {package}.v1 import {package}_pb2, {package}_pb2_grpc

MODULE = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.asyncio


async def test_pings(module_harness):
    async with module_harness(MODULE, config={{"greeting": "Hi"}}) as harness:
        reply = await harness.stub({package}_pb2_grpc.{service}Stub).Ping({package}_pb2.PingRequest(name="Ada"))
    assert reply.message == "Hi, Ada!"
''',
        "README.md": f"""# {name}

{description}

- `module.toml`: the manifest (dependencies, events, feature flag, restart policy).
- `v1/{package}.proto`: the module's API; after changing it run `make proto`.
- `module.py`: the module class: lifecycle hooks, gRPC methods, event handlers.
- `tests/`: tests through `sdk.testing` (`make test` runs them).

Serve it alone with `python -m sdk.run modules/{package}`, or with the mesh: `make run`.
""",
    }


def _ping_signature(package: str) -> str:
    """The Ping method's first line(s), laid out as `ruff format` would (one line when it fits
    in 120 columns), so that a new module passes `make lint` whatever its name's length."""
    one_line = (
        f"    async def Ping(self, request: {package}_pb2.PingRequest, context: ServicerContext)"
        f" -> {package}_pb2.PingResponse:"
    )
    if len(one_line) <= 120:
        return one_line
    return (
        "    async def Ping(\n"
        f"        self, request: {package}_pb2.PingRequest, context: ServicerContext\n"
        f"    ) -> {package}_pb2.PingResponse:"
    )


def create(modules_dir: Path, name: str, description: str) -> Path:
    """Write the scaffold under `modules_dir` and generate its code; returns the module's folder."""
    package, _ = names(name)
    folder = modules_dir / package
    if folder.exists():
        raise ScaffoldError(f"{folder} exists already; choose another name or remove it")
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
            f"the module was written to {folder}, but its code could not be generated ({error}); install the dev "
            "extras (make test does) and run make proto"
        ) from None
    return folder
