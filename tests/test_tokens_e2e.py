"""`mesh token issue` end to end: a `mesh up` makes the signing key and hands modules its public
half; a token from the CLI proves the tenant to a module through the real grpcurl, and a tenant
claimed without one is refused."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import pytest

from conftest import PROJECT, tool
from meshkit import WAIT_SECONDS, MeshDir

pytestmark = pytest.mark.e2e


def test_a_token_from_the_cli_proves_the_tenant_through_grpcurl(tmp_path):
    mesh = MeshDir(tmp_path)
    shutil.copytree(PROJECT / "modules" / "users", mesh.modules / "users")
    with mesh.up() as running:
        users = running.wait_until_up()["users"].address
        pki = mesh.state / "pki"
        assert stat.S_IMODE((pki / "token-key.pem").stat().st_mode) == 0o600
        assert b"PRIVATE" not in (pki / "modules" / "users" / "token-keys.pem").read_bytes()

        state = ("--state-dir", str(mesh.state))
        enabled = mesh.run_cli("tenant", "enable", "acme", "users", "--coordinator", running.address, *state)
        assert enabled.returncode == 0, enabled.stderr
        issued = mesh.run_cli("token", "issue", "--tenant", "acme", "--role", "clerk", *state)
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip()
        flags = running.grpcurl_flags()

        ada = '{"name": "Ada", "email": "ada@example.org"}'

        def create_ada(*headers: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [tool("grpcurl"), *flags, *headers, "-d", ada, users, "users.v1.Users/CreateUser"],
                capture_output=True,
                text=True,
                timeout=WAIT_SECONDS,
            )

        claimed = create_ada("-H", "x-tenant-id: acme")
        assert claimed.returncode != 0 and "Unauthenticated" in claimed.stderr, claimed.stderr
        assert "authorization: Bearer" in claimed.stderr

        # The module learns the enablement from a KV watch a moment after `mesh tenant enable`.
        created = running.wait_for(
            lambda: (done := create_ada("-H", f"authorization: Bearer {token}")).returncode == 0 and done,
            "the users module to serve acme's token",
        )
        assert json.loads(created.stdout)["user"]["name"] == "Ada"


def test_token_issue_without_a_mesh_state_says_so_in_one_line(tmp_path):
    mesh = MeshDir(tmp_path)
    result = mesh.run_cli("token", "issue", "--tenant", "acme", "--state-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "run `mesh up` once" in result.stderr
