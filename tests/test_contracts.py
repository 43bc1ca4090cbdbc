"""The mesh.v1 contracts: generated code in sync, names outside tools rely on, buf lint,
and grpcurl reading the .proto files."""

from __future__ import annotations

import filecmp
import subprocess

from conftest import PROJECT, tool
from mesh.protogen import generate, googleapis_protos
from mesh.v1 import coordinator_pb2, lifecycle_pb2, module_pb2


def test_generated_code_matches_the_proto_files(tmp_path):
    written = generate(PROJECT, tmp_path)

    assert any(str(path).startswith("mesh/v1/") for path in written)
    committed = {
        path.relative_to(PROJECT)
        for folder in (PROJECT / "mesh" / "v1", *PROJECT.glob("modules/*/v1"))
        for path in folder.glob("*.py*")
    }
    assert set(written) == committed, "run `make proto` and commit the result"
    drifted = [str(path) for path in written if not filecmp.cmp(tmp_path / path, PROJECT / path, shallow=False)]
    assert drifted == [], "run `make proto` and commit the result"


def test_the_googleapis_files_buf_reads_are_the_ones_the_code_is_generated_against():
    vendored = PROJECT / "third_party" / "googleapis" / "google" / "api"
    installed = googleapis_protos() / "google" / "api"
    for name in ("annotations.proto", "http.proto"):
        assert filecmp.cmp(vendored / name, installed / name, shallow=False), (
            f"copy {installed / name} to {vendored} (googleapis-common-protos was upgraded)"
        )


def test_service_names_are_the_ones_outside_tools_use():
    assert lifecycle_pb2.DESCRIPTOR.services_by_name["Lifecycle"].full_name == "mesh.v1.Lifecycle"
    coordinator = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"]
    assert coordinator.full_name == "mesh.v1.Coordinator"
    assert {m.name for m in coordinator.methods} >= {
        "ListModules",
        "GetModule",
        "GetSystemHealth",
        "GetSystemMetrics",
        "GetGraph",
        "ReloadModule",
        "RestartModule",
        "RegisterModule",
        "WatchModules",
    }
    lifecycle_methods = {m.name for m in lifecycle_pb2.DESCRIPTOR.services_by_name["Lifecycle"].methods}
    assert lifecycle_methods >= {"Describe", "Initialize", "Start", "Stop", "Reload"}


def test_list_modules_entries_have_the_fields_tools_read():
    entry = coordinator_pb2.ListModulesResponse.DESCRIPTOR.fields_by_name["modules"].message_type
    assert {"name", "version", "state", "address", "dependencies"} <= set(entry.fields_by_name)
    states = module_pb2.ModuleState.keys()
    for state in (
        "REGISTERED",
        "INITIALIZING",
        "INITIALIZED",
        "STARTING",
        "RUNNING",
        "STOPPING",
        "STOPPED",
        "FAILED",
        "SKIPPED",
    ):
        assert f"MODULE_STATE_{state}" in states


def test_buf_lint_passes_with_comments_required():
    result = subprocess.run([tool("buf"), "lint"], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grpcurl_describes_lifecycle_and_coordinator_from_the_proto_files():
    for proto, service, method in (
        ("mesh/v1/lifecycle.proto", "mesh.v1.Lifecycle", "rpc Initialize ( .mesh.v1.InitializeRequest )"),
        ("mesh/v1/coordinator.proto", "mesh.v1.Coordinator", "rpc ListModules ( .mesh.v1.ListModulesRequest )"),
    ):
        result = subprocess.run(
            [tool("grpcurl"), "-import-path", "proto", "-proto", proto, "describe", service],
            cwd=PROJECT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert f"{service} is a service:" in result.stdout
        assert method in result.stdout
