"""Every recipe of docs/grpcurl.md, run as written (with the real grpcurl and the flags of
`mesh creds grpcurl-flags`) against a running mesh that serves mTLS."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import grpc
import pytest

from conftest import PROJECT
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh
from users.v1 import users_pb2, users_pb2_grpc

pytestmark = pytest.mark.e2e

EXPECTED = {
    "list": ["mesh.v1.Coordinator", "mesh.v1.Tenancy", "grpc.health.v1.Health"],
    "describe": ["mesh.v1.Coordinator is a service:", "rpc ListModules"],
    "list-modules": ['"name": "users"', '"state": "MODULE_STATE_RUNNING"', '"address": "127.0.0.1:'],
    "system-health": ['"status": "HEALTH_STATUS_HEALTHY"'],
    "tenant-call": ['"name": "Ada"', '"email": "ada@example.org"'],
    "health-check": ['"status": "SERVING"'],
    "publish-event": ['"subject": "mesh.evt._.user.created"'],
    "module-metrics": ['"name": "users"', '"request_count": "1"'],
}


# The first line of the tenant-call recipe.
TENANT_ENABLE = ".venv/bin/mesh tenant enable acme users"


def recipes() -> dict[str, str]:
    text = (PROJECT / "docs" / "grpcurl.md").read_text()
    blocks = re.findall(r"```sh\n# recipe: ([\w-]+)\n(.*?)```", text, re.S)
    return {name: body for name, body in blocks}


def test_every_recipe_is_checked():
    assert set(recipes()) == set(EXPECTED)


def serves_tenant(running: RunningMesh, address: str, tenant: str) -> bool:
    """Whether the users module at `address` answers a read-only call for `tenant`."""

    async def call() -> None:
        # as a mesh process forwarding a call: its x-tenant-id is trusted (operators need a token)
        async with running.channel(address, as_coordinator=True) as channel:
            await users_pb2_grpc.UsersStub(channel).ListUsers(
                users_pb2.ListUsersRequest(), metadata=[("x-tenant-id", tenant)], timeout=WAIT_SECONDS
            )

    try:
        asyncio.run(call())
    except grpc.aio.AioRpcError:
        return False
    return True


def test_the_recipes_work_against_a_running_mesh(tmp_path):
    mesh = MeshDir(tmp_path)
    shutil.copytree(PROJECT / "modules" / "users", mesh.modules / "users")
    with mesh.up() as running:
        users = running.wait_until_up()["users"].address
        address = running.address
        # The recipes find the mesh's credentials (`mesh creds grpcurl-flags`) in its state folder.
        env = mesh.environment(MESH_COORDINATOR=address, MESH_STATE_DIR=str(mesh.state))

        def run(script: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-ec", script], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=WAIT_SECONDS
            )

        for name, body in recipes().items():
            script = body.replace("127.0.0.1:50050", address)
            if name == "tenant-call":
                # `mesh tenant enable` returns once the enablement is stored; the module learns
                # it from a KV watch a moment later. So the recipe's first line runs first, the
                # test waits until the module serves the tenant, then the whole recipe runs
                # (enabling again changes nothing).
                assert script.startswith(TENANT_ENABLE + "\n"), script
                enabled = run(TENANT_ENABLE)
                assert enabled.returncode == 0, f"{TENANT_ENABLE} failed:\n{enabled.stderr}"
                running.wait_for(lambda: serves_tenant(running, users, "acme"), "the users module to serve tenant acme")
            result = run(script)
            assert result.returncode == 0, f"recipe {name} failed:\n{result.stderr}"
            for expected in EXPECTED[name]:
                assert expected in result.stdout, f"recipe {name}: {expected!r} not in\n{result.stdout}"
