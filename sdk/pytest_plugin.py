"""pytest fixtures for module authors, loaded automatically when the project is installed.

* `mesh_nats`: an embedded nats-server of the test's own, stopped when the test ends
  (also when it fails). It starts in ~30 ms, and a fresh one per test means no durable
  consumer position, unacked message, stream or bucket is left over by an earlier test.
* `mesh_ca`: a certificate authority of the test's own (in memory).
* `module_harness`: builds `ModuleHarness` objects that use that server and that authority
  (so one harness can be another's dependency):

      async def test_greets(module_harness):
          async with module_harness("modules/greeter") as harness:
              ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest

from mesh.protocol.pki import CertificateAuthority
from sdk.testing import EmbeddedNats, ModuleHarness


@pytest.fixture
def mesh_nats() -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream for this test alone, stopped when the test ends."""
    with EmbeddedNats() as server:
        yield server


@pytest.fixture
def mesh_ca() -> CertificateAuthority:
    """A certificate authority for this test alone, issuing the certificates of its harnesses."""
    return CertificateAuthority.create()


@pytest.fixture
def module_harness(mesh_nats: EmbeddedNats, mesh_ca: CertificateAuthority) -> Callable[..., ModuleHarness]:
    """`ModuleHarness` with `nats=` bound to this test's server and `authority=` to its CA."""
    return functools.partial(ModuleHarness, nats=mesh_nats, authority=mesh_ca)
