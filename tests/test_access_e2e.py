"""Identity and access through a running `mesh up` (real processes, real TLS, the real grpcurl):
who may reach the coordinator, what each role may call, who may register a module, and the
plaintext mode that has to be asked for."""

from __future__ import annotations

import asyncio
import json
import subprocess

import grpc
import pytest

from conftest import tool
from mesh.protocol.errors import error_info
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc, module_pb2
from meshkit import WAIT_SECONDS, MeshDir
from sdk import State

pytestmark = pytest.mark.e2e


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("grpcurl"), *args], capture_output=True, text=True, timeout=WAIT_SECONDS)


def refusal_of(transport: Transport, address: str, call) -> grpc.aio.AioRpcError:
    """The error of one call over `transport`, which must fail."""

    async def run() -> None:
        async with transport.channel(address) as channel:
            await call(channel)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(run())
    return raised.value


def test_the_coordinator_answers_mesh_certificates_only_and_by_role(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up() as running:
        modules = running.wait_until_up()
        address = running.address
        ca = str(mesh.state / "pki" / "ca.pem")

        plaintext = grpcurl("-plaintext", address, "mesh.v1.Coordinator/ListModules")
        assert plaintext.returncode != 0
        without_certificate = grpcurl("-cacert", ca, address, "mesh.v1.Coordinator/ListModules")
        assert without_certificate.returncode != 0

        admin = grpcurl(*running.grpcurl_flags(), address, "mesh.v1.Coordinator/ListModules")
        assert admin.returncode == 0, admin.stderr
        assert [m["name"] for m in json.loads(admin.stdout)["modules"]] == ["base"]

        viewer_flags = running.grpcurl_flags("viewer")
        listed = grpcurl(*viewer_flags, address, "mesh.v1.Coordinator/ListModules")
        assert listed.returncode == 0, listed.stderr
        shutdown = grpcurl(*viewer_flags, address, "mesh.v1.Coordinator/Shutdown")
        assert shutdown.returncode != 0 and "PermissionDenied" in shutdown.stderr

        viewer = Transport(mesh.state / "pki" / "operators" / "viewer")
        refused = refusal_of(
            viewer,
            address,
            lambda channel: coordinator_pb2_grpc.CoordinatorStub(channel).Shutdown(coordinator_pb2.ShutdownRequest()),
        )
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        info = error_info(refused)
        assert info is not None and info.reason == "ACCESS_DENIED"

        not_the_coordinator = refusal_of(
            running.transport,
            modules["base"].address,
            lambda channel: lifecycle_pb2_grpc.LifecycleStub(channel).Stop(lifecycle_pb2.StopRequest(reason="x")),
        )
        assert not_the_coordinator.code() == grpc.StatusCode.PERMISSION_DENIED
        assert State(running.modules()["base"].state) is State.RUNNING


def test_a_module_certificate_registers_only_the_module_it_names(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up() as running:
        modules = running.wait_until_up()
        issued = mesh.run_cli("creds", "issue", "--module", "intruder", "--out", str(tmp_path / "intruder"))
        assert issued.returncode == 0, issued.stderr
        intruder = Transport(tmp_path / "intruder")
        for name in ("base", "visitor"):  # a takeover of a running module, and a module of another name
            manifest = module_pb2.Manifest(name=name, version="1.0.0")
            request = coordinator_pb2.RegisterModuleRequest(address=modules["base"].address, manifest=manifest)
            refused = refusal_of(
                intruder,
                running.address,
                lambda channel, r=request: coordinator_pb2_grpc.CoordinatorStub(channel).RegisterModule(r),
            )
            assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
            info = error_info(refused)
            assert info is not None and info.reason == "ACCESS_DENIED"
        after = running.modules()
        assert set(after) == {"base"}
        assert after["base"].origin == module_pb2.MODULE_ORIGIN_LOCAL


def test_mesh_up_insecure_serves_plaintext_and_says_so(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up("--insecure") as running:
        running.wait_until_up()
        assert "INSECURE" in running.text
        assert json.loads((mesh.state / "coordinator.json").read_text())["tls"] is False
        listed = grpcurl("-plaintext", running.address, "mesh.v1.Coordinator/ListModules")
        assert listed.returncode == 0, listed.stderr
        status = mesh.run_cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert {m["state"] for m in json.loads(status.stdout)} == {"RUNNING"}


def test_plaintext_on_a_public_address_is_refused_with_one_line(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    args = [arg if arg != "127.0.0.1:0" else "0.0.0.0:0" for arg in mesh.up_args()]
    refused = mesh.run_cli(*args, "--insecure")
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0:0 without TLS" in lines[0], refused.stderr
    assert not (mesh.state / "coordinator.json").exists()
