"""Every recipe of docs/grpcurl.md, run as written (with the real grpcurl) against a running mesh."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import PROJECT
from meshkit import MeshDir

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


def recipes() -> dict[str, str]:
    text = (PROJECT / "docs" / "grpcurl.md").read_text()
    blocks = re.findall(r"```sh\n# recipe: ([\w-]+)\n(.*?)```", text, re.S)
    return {name: body for name, body in blocks}


def test_every_recipe_is_checked():
    assert set(recipes()) == set(EXPECTED)


def test_the_recipes_work_against_a_running_mesh(tmp_path):
    mesh = MeshDir(tmp_path)
    shutil.copytree(PROJECT / "modules" / "users", mesh.modules / "users")
    with mesh.up() as running:
        running.wait_until_up()
        address = running.address
        env = mesh.environment(MESH_COORDINATOR=address)
        for name, body in recipes().items():
            script = body.replace("127.0.0.1:50050", address)
            result = subprocess.run(
                ["bash", "-ec", script], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, f"recipe {name} failed:\n{result.stderr}"
            for expected in EXPECTED[name]:
                assert expected in result.stdout, f"recipe {name}: {expected!r} not in\n{result.stdout}"
