"""Throw-away identities for benchmarks that serve a module secured as `mesh up` serves it.

A CA of the benchmark's own issues the module's credentials folder (its MESH_TLS_DIR: the
certificate, its key and the public token key, as mesh/control/credentials.py writes it), the
coordinator's credentials (only the coordinator may call a module's Lifecycle) and an
operator's. The load is sent as an operator: a caller from outside the mesh, whose tenant the
module verifies from its bearer token on every call (a module's or the coordinator's
x-tenant-id would be trusted as sent, and measure nothing).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import nats

from mesh.control.tenancy import TenancyStore
from mesh.protocol.identity import COORDINATOR_NAME, Role, module_identity, operator_identity
from mesh.protocol.names import TENANT_METADATA
from mesh.protocol.pki import CertificateAuthority, Credentials
from mesh.protocol.streams import provision_mesh
from mesh.protocol.tokens import AUTHORIZATION_METADATA, SIGNING_KEY_FILE, VERIFICATION_KEYS_FILE, SigningKey, issue

TENANT = "acme"
"""The tenant the load calls for; the module is enabled for it."""
STRANGER = "globex"
"""A tenant with a valid token whom the module is not enabled for."""


@dataclass(frozen=True)
class BenchIdentity:
    """The credentials and tokens of one secured benchmark run.

    Attributes:
        module_dir: The module's MESH_TLS_DIR (also what a raw server with the same TLS reads).
        coordinator: Credentials naming the coordinator, to bring the module up.
        operator: Credentials of a caller from outside the mesh, the load's client.
        token: A bearer token of TENANT, signed by the key the module trusts.
        forged_token: A token of TENANT signed by a key the module does not trust.
        stranger_token: A valid token of STRANGER.
    """

    module_dir: Path
    coordinator: Credentials
    operator: Credentials
    token: str
    forged_token: str
    stranger_token: str

    @classmethod
    def issue(cls, folder: Path, module: str) -> BenchIdentity:
        """Make a CA in memory and issue everything into `folder`.

        Args:
            folder: A scratch folder (the module's credentials land in `folder/modules/<module>`).
            module: The module's name, which its certificate carries.
        """
        authority = CertificateAuthority.create()
        module_dir = folder / "modules" / module
        authority.issue(module_identity(module).common_name).write(module_dir)
        key = SigningKey.load_or_create(folder / SIGNING_KEY_FILE)
        (module_dir / VERIFICATION_KEYS_FILE).write_bytes(key.public_pem)
        untrusted = SigningKey.load_or_create(folder / f"untrusted-{secrets.token_hex(4)}.pem")
        return cls(
            module_dir=module_dir,
            coordinator=authority.issue(COORDINATOR_NAME),
            operator=authority.issue(operator_identity("bench", Role.VIEWER).common_name),
            token=issue(key, TENANT),
            forged_token=issue(untrusted, TENANT),
            stranger_token=issue(key, STRANGER),
        )


def call_metadata(token: str, tenant: str = TENANT) -> tuple[tuple[str, str], ...]:
    """What an operator's call carries: its bearer token and the tenant it claims."""
    return ((AUTHORIZATION_METADATA, f"Bearer {token}"), (TENANT_METADATA, tenant))


async def enable_tenant(nats_url: str, module: str, tenant: str = TENANT) -> None:
    """What the coordinator does before a module starts: create the streams and tenancy
    buckets, and (as `mesh tenant enable` would) enable `module` for `tenant`."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await provision_mesh(js)
        await TenancyStore(js).set_enabled(tenant, module, True, "bench")
    finally:
        await client.close()
