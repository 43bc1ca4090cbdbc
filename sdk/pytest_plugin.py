"""pytest fixtures for module authors, loaded automatically when the project is installed.

* `mesh_nats`: one embedded nats-server for the whole test session.
* `module_harness`: builds `ModuleHarness` objects that use that server:

      async def test_greets(module_harness):
          async with module_harness("modules/greeter") as harness:
              ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest

from sdk.testing import EmbeddedNats, ModuleHarness


@pytest.fixture(scope="session")
def mesh_nats() -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream, shared by the session's tests, stopped at the end."""
    with EmbeddedNats() as server:
        yield server


@pytest.fixture
def module_harness(mesh_nats: EmbeddedNats) -> Callable[..., ModuleHarness]:
    """`ModuleHarness` with `nats=` bound to the session's server."""
    return functools.partial(ModuleHarness, nats=mesh_nats)
