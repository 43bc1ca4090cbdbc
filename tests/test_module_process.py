"""A module as its own OS process (`python -m sdk.run`): grpcurl and reflection over mTLS,
signals, dying with its parent, registration with a coordinator, plaintext only when asked
(and only on loopback), and clear exits on bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import grpc
import psutil
import pytest

from conftest import PROJECT, tool
from mesh.protocol.identity import COORDINATOR_NAME, identity_of, module_identity
from mesh.protocol.pki import CA_FILE, CERT_FILE, KEY_FILE, CertificateAuthority
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, lifecycle_pb2
from processes import WAIT_SECONDS, settings

GREETER = PROJECT / "modules" / "greeter"
PROBE = PROJECT / "tests" / "fixtures" / "modules" / "probe"


@pytest.fixture
def authority(tmp_path) -> CertificateAuthority:
    """The CA `spawn` issues the test's module certificates from."""
    return CertificateAuthority.load_or_create(tmp_path / "pki")


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("grpcurl"), *args], capture_output=True, text=True, timeout=WAIT_SECONDS)


def grpcurl_flags(module) -> list[str]:
    """grpcurl's flags to call `module` as the coordinator (as the test does)."""
    folder = module.transport.folder
    return ["-cacert", str(folder / CA_FILE), "-cert", str(folder / CERT_FILE), "-key", str(folder / KEY_FILE)]


def without_credentials(**extra: str) -> dict[str, str]:
    """This environment without any credentials setting of the caller's, plus `extra`."""
    return {
        **{key: value for key, value in os.environ.items() if key not in ("MESH_TLS_DIR", "MESH_INSECURE")},
        **extra,
    }


def run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdk.run", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


def probe_settings(config: dict) -> lifecycle_pb2.ModuleSettings:
    return settings(config=config, dependencies={"greeter": "127.0.0.1:9"})


def wait_gone(pid: int) -> bool:
    try:
        psutil.Process(pid).wait(timeout=WAIT_SECONDS)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def test_grpcurl_lists_describes_and_health_checks_a_module_process(spawn):
    module = spawn(GREETER)
    address = module.address
    flags = grpcurl_flags(module)

    listed = grpcurl(*flags, address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"mesh.v1.Lifecycle", "grpc.health.v1.Health", "greeter.v1.Greeter"} <= set(listed.stdout.split())

    described = grpcurl(*flags, address, "describe", "greeter.v1.Greeter")
    assert "rpc SayHello ( .greeter.v1.SayHelloRequest )" in described.stdout

    before = grpcurl(*flags, address, "grpc.health.v1.Health/Check")
    assert '"status": "NOT_SERVING"' in before.stdout

    module.bring_up()
    after = grpcurl(*flags, address, "grpc.health.v1.Health/Check")
    assert after.returncode == 0, after.stderr
    assert '"status": "SERVING"' in after.stdout

    hello = grpcurl(*flags, "-d", '{"name": "Ada"}', address, "greeter.v1.Greeter/SayHello")
    assert '"message": "Hello, Ada!"' in hello.stdout

    plaintext = grpcurl("-plaintext", address, "grpc.health.v1.Health/Check")
    assert plaintext.returncode != 0
    anonymous = grpcurl("-cacert", flags[1], address, "grpc.health.v1.Health/Check")
    assert anonymous.returncode != 0


def test_the_ready_file_reports_the_bound_address(spawn):
    module = spawn(GREETER)
    ready = module.ready()
    assert ready["name"] == "greeter"
    assert ready["pid"] == module.popen.pid
    host, _, port = ready["address"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0


def test_sigterm_stops_gracefully(spawn, tmp_path):
    module = spawn(PROBE)
    module.bring_up(probe_settings({}))
    module.popen.send_signal(signal.SIGTERM)
    assert module.popen.wait(timeout=WAIT_SECONDS) == 0
    assert (tmp_path / "state-0" / "stopped").read_text() == "clean"
    assert "module probe stopping (process shutting down)" in module.log.read_text()


def test_sigterm_cancels_a_stop_that_outlasts_the_grace_period(spawn):
    module = spawn(PROBE, env={"MESH_STOP_GRACE_SECONDS": "0.5"})
    module.bring_up(probe_settings({"stop_seconds": 3600}))
    module.popen.send_signal(signal.SIGTERM)
    assert module.popen.wait(timeout=WAIT_SECONDS) == 0
    assert "stop was forced" in module.log.read_text()


def test_exits_when_its_stdin_pipe_closes(spawn):
    module = spawn(GREETER, "--exit-with-parent", stdin=subprocess.PIPE)
    module.ready()
    module.popen.stdin.close()
    assert module.popen.wait(timeout=WAIT_SECONDS) == 0
    assert "stdin closed; stopping" in module.log.read_text()


def test_exits_when_its_parent_is_killed(tmp_path, authority):
    ready_file = tmp_path / "ready.json"
    credentials = tmp_path / "tls-greeter"
    authority.issue(module_identity("greeter").common_name).write(credentials)
    parent_script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen(
            [sys.executable, "-m", "sdk.run", {str(GREETER)!r}, "--exit-with-parent"],
            cwd={str(PROJECT)!r}, stdin=subprocess.DEVNULL,
            env={{**os.environ, "MESH_READY_FILE": {str(ready_file)!r}, "MESH_TLS_DIR": {str(credentials)!r}}},
        )
        print(child.pid, flush=True)
        time.sleep(3600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not ready_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready_file.exists(), "the module never came up"
        parent.kill()
        parent.wait()
        assert wait_gone(child_pid), "the module outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
        if psutil.pid_exists(child_pid):
            os.kill(child_pid, signal.SIGKILL)


class RecordingCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """A real Coordinator server that records registrations and who made them (or refuses them)."""

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.requests: list[coordinator_pb2.RegisterModuleRequest] = []
        self.callers: list[str] = []

    async def RegisterModule(self, request, context):
        self.callers.append(str(identity_of(context)))
        self.requests.append(request)
        if self.refuse:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "greeter is registered at another address")
        return coordinator_pb2.RegisterModuleResponse()


async def serve_coordinator(
    servicer: RecordingCoordinator, authority: CertificateAuthority
) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    credentials = authority.issue(COORDINATOR_NAME)
    port = server.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    await server.start()
    return server, f"127.0.0.1:{port}"


async def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_registers_with_the_coordinator_in_its_environment(spawn, authority):
    coordinator = RecordingCoordinator(refuse=False)
    server, address = await serve_coordinator(coordinator, authority)
    try:
        module = spawn(GREETER, env={"MESH_COORDINATOR": address})
        await wait_for(lambda: coordinator.requests, "a registration")
        request = coordinator.requests[0]
        assert request.manifest.name == "greeter"
        assert request.address == module.ready()["address"]
        assert request.instance_id == module.ready()["instance_id"]
        assert coordinator.callers == ["module:greeter"]
        assert module.popen.poll() is None
    finally:
        await server.stop(None)


async def test_a_refused_registration_ends_the_process(spawn, authority):
    coordinator = RecordingCoordinator(refuse=True)
    server, address = await serve_coordinator(coordinator, authority)
    try:
        module = spawn(GREETER, env={"MESH_COORDINATOR": address})
        await wait_for(lambda: module.popen.poll() is not None, "the module to exit")
        assert module.popen.returncode == 3
        assert "refused module greeter: ALREADY_EXISTS" in module.log.read_text()
    finally:
        await server.stop(None)


def test_a_bad_manifest_exits_2_with_one_clear_line(tmp_path):
    module_dir = tmp_path / "broken"
    module_dir.mkdir()
    (module_dir / "module.toml").write_text('name = "broken"\nversion = "1.0"\n[run]\nentry = "module:X"\n')
    result = run_module(str(module_dir), env=without_credentials(MESH_INSECURE="1"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"sdk.run: {module_dir}/module.toml: field 'version' has '1.0': expected a semver "
        "version MAJOR.MINOR.PATCH, e.g. '1.0.0' or '2.1.0-rc.1'"
    ]


def test_a_port_in_use_is_refused_not_shared():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_module(str(GREETER), "--listen", f"127.0.0.1:{port}", env=without_credentials(MESH_INSECURE="1"))
    assert result.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}" in result.stderr


def test_without_credentials_it_exits_2_with_one_clear_line():
    result = run_module(str(GREETER), env=without_credentials())
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "sdk.run: no credentials: set MESH_TLS_DIR to a folder with ca.pem, cert.pem and key.pem"
    )
    assert "MESH_INSECURE=1" in lines[0]


def test_a_credentials_folder_without_its_files_exits_2_naming_the_file(tmp_path):
    result = run_module(str(GREETER), env=without_credentials(MESH_TLS_DIR=str(tmp_path / "nowhere")))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot read {tmp_path / 'nowhere' / 'ca.pem'}" in lines[0], result.stderr


def test_insecure_mode_serves_plaintext_on_loopback_without_identity_checks(spawn):
    module = spawn(GREETER, env={"MESH_INSECURE": "1"})
    module.bring_up()  # Lifecycle over plaintext: there are no identities to check
    hello = grpcurl("-plaintext", "-d", '{"name": "Ada"}', module.address, "greeter.v1.Greeter/SayHello")
    assert '"message": "Hello, Ada!"' in hello.stdout, hello.stderr
    assert module.stop() == 0


def test_insecure_mode_refuses_to_listen_beyond_loopback():
    result = run_module(str(GREETER), "--listen", "0.0.0.0:0", env=without_credentials(MESH_INSECURE="1"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sdk.run: refusing to listen on 0.0.0.0:0 without TLS: plaintext (--insecure) is for this machine only; "
        "listen on 127.0.0.1, or drop --insecure to serve mTLS"
    ]
