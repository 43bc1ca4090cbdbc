"""`mesh new`: the scaffolded module passes its own test and comes up in a mesh unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from meshkit import MeshDir
from sdk import State

pytestmark = pytest.mark.e2e


def test_a_new_module_passes_its_test_and_runs_in_the_mesh(tmp_path):
    mesh = MeshDir(tmp_path)
    created = mesh.run_cli("new", "demo-shop", "--modules", str(mesh.modules), "--description", "Sells demos.")
    assert created.returncode == 0, created.stderr
    folder = mesh.modules / "demo_shop"
    for relative in (
        "module.toml",
        "module.py",
        "README.md",
        "v1/demo_shop.proto",
        "v1/demo_shop_pb2.py",
        "v1/demo_shop_pb2_grpc.py",
        "tests/test_demo_shop.py",
    ):
        assert (folder / relative).exists(), relative

    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(mesh.modules)},
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    again = mesh.run_cli("new", "demo-shop", "--modules", str(mesh.modules))
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = mesh.run_cli("new", "Demo_Shop", "--modules", str(mesh.modules))
    assert bad.returncode == 2 and "not a kebab-case module name" in bad.stderr

    with mesh.up() as running:
        modules = running.wait_until_up()
        assert State(modules["demo-shop"].state) is State.RUNNING
