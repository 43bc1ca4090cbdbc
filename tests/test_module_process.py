"""A module as its own OS process (`python -m sdk.run`): grpcurl and reflection, signals,
dying with its parent, registration with a coordinator, and clear exits on bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import psutil
import pytest

from conftest import PROJECT, tool
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc

GREETER = PROJECT / "modules" / "greeter"
PROBE = PROJECT / "tests" / "fixtures" / "modules" / "probe"
WAIT_SECONDS = 30  # an upper bound for things to happen, never a speed assertion


class ModuleProcess:
    """A module process started by a test, with its ready file and logs."""

    def __init__(self, popen: subprocess.Popen[bytes], ready_file: Path, log: Path) -> None:
        self.popen = popen
        self.ready_file = ready_file
        self.log = log

    def ready(self) -> dict:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.ready_file.exists():
                return json.loads(self.ready_file.read_text())
            if self.popen.poll() is not None:
                raise AssertionError(f"module exited with {self.popen.returncode}: {self.log.read_text()}")
            time.sleep(0.02)
        raise AssertionError(f"module not ready within {WAIT_SECONDS} s: {self.log.read_text()}")

    @property
    def address(self) -> str:
        return self.ready()["address"]


@pytest.fixture
def spawn(tmp_path):
    """Starts module processes; kills whatever is left at teardown, also on failure."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        module_dir: Path, *args: str, env: dict[str, str] | None = None, stdin=subprocess.DEVNULL
    ) -> ModuleProcess:
        index = len(started)
        ready_file = tmp_path / f"ready-{index}.json"
        log = tmp_path / f"module-{index}.log"
        environment = {
            **os.environ,
            "MESH_READY_FILE": str(ready_file),
            "MESH_STATE_DIR": str(tmp_path / f"state-{index}"),
            **(env or {}),
        }
        with open(log, "wb") as output:
            popen = subprocess.Popen(
                [sys.executable, "-m", "sdk.run", str(module_dir), *args],
                cwd=PROJECT,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=stdin,
            )
        started.append(popen)
        return ModuleProcess(popen, ready_file, log)

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait()


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("grpcurl"), "-plaintext", *args], capture_output=True, text=True, timeout=WAIT_SECONDS)


def probe_settings(config: dict) -> lifecycle_pb2.ModuleSettings:
    settings = lifecycle_pb2.ModuleSettings(
        dependencies=[lifecycle_pb2.DependencyEndpoint(name="greeter", address="127.0.0.1:9", available=True)]
    )
    settings.config.update(config)
    return settings


def drive(address: str, settings: lifecycle_pb2.ModuleSettings | None = None) -> lifecycle_pb2.StartResponse:
    async def run() -> lifecycle_pb2.StartResponse:
        async with grpc.aio.insecure_channel(address) as channel:
            lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
            await lifecycle.Initialize(lifecycle_pb2.InitializeRequest(settings=settings))
            return await lifecycle.Start(lifecycle_pb2.StartRequest())

    return asyncio.run(run())


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

    listed = grpcurl(address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"mesh.v1.Lifecycle", "grpc.health.v1.Health", "greeter.v1.Greeter"} <= set(listed.stdout.split())

    described = grpcurl(address, "describe", "greeter.v1.Greeter")
    assert "rpc SayHello ( .greeter.v1.SayHelloRequest )" in described.stdout

    before = grpcurl(address, "grpc.health.v1.Health/Check")
    assert '"status": "NOT_SERVING"' in before.stdout

    drive(address)
    after = grpcurl(address, "grpc.health.v1.Health/Check")
    assert after.returncode == 0, after.stderr
    assert '"status": "SERVING"' in after.stdout

    hello = grpcurl("-d", '{"name": "Ada"}', address, "greeter.v1.Greeter/SayHello")
    assert '"message": "Hello, Ada!"' in hello.stdout


def test_the_ready_file_reports_the_bound_address(spawn):
    module = spawn(GREETER)
    ready = module.ready()
    assert ready["name"] == "greeter"
    assert ready["pid"] == module.popen.pid
    host, _, port = ready["address"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0


def test_sigterm_stops_gracefully(spawn, tmp_path):
    module = spawn(PROBE)
    drive(module.address, probe_settings({}))
    module.popen.send_signal(signal.SIGTERM)
    assert module.popen.wait(timeout=WAIT_SECONDS) == 0
    assert (tmp_path / "state-0" / "stopped").read_text() == "clean"
    assert "module probe stopping (process shutting down)" in module.log.read_text()


def test_sigterm_cancels_a_stop_that_outlasts_the_grace_period(spawn):
    module = spawn(PROBE, env={"MESH_STOP_GRACE_SECONDS": "0.5"})
    drive(module.address, probe_settings({"stop_seconds": 3600}))
    module.popen.send_signal(signal.SIGTERM)
    assert module.popen.wait(timeout=WAIT_SECONDS) == 0
    assert "stop was forced" in module.log.read_text()


def test_exits_when_its_stdin_pipe_closes(spawn):
    module = spawn(GREETER, "--exit-with-parent", stdin=subprocess.PIPE)
    module.ready()
    module.popen.stdin.close()
    assert module.popen.wait(timeout=WAIT_SECONDS) == 0
    assert "stdin closed; stopping" in module.log.read_text()


def test_exits_when_its_parent_is_killed(tmp_path):
    ready_file = tmp_path / "ready.json"
    parent_script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen(
            [sys.executable, "-m", "sdk.run", {str(GREETER)!r}, "--exit-with-parent"],
            cwd={str(PROJECT)!r}, stdin=subprocess.DEVNULL,
            env={{**os.environ, "MESH_READY_FILE": {str(ready_file)!r}}},
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
    """A real Coordinator server that records registrations (or refuses them)."""

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.requests: list[coordinator_pb2.RegisterModuleRequest] = []

    async def RegisterModule(self, request, context):
        self.requests.append(request)
        if self.refuse:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "greeter is registered at another address")
        return coordinator_pb2.RegisterModuleResponse()


async def serve_coordinator(servicer: RecordingCoordinator) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_registers_with_the_coordinator_in_its_environment(spawn):
    coordinator = RecordingCoordinator(refuse=False)
    server, address = await serve_coordinator(coordinator)
    try:
        module = spawn(GREETER, env={"MESH_COORDINATOR": address})
        await wait_for(lambda: coordinator.requests, "a registration")
        request = coordinator.requests[0]
        assert request.manifest.name == "greeter"
        assert request.address == module.ready()["address"]
        assert request.instance_id == module.ready()["instance_id"]
        assert module.popen.poll() is None
    finally:
        await server.stop(None)


async def test_a_refused_registration_ends_the_process(spawn):
    coordinator = RecordingCoordinator(refuse=True)
    server, address = await serve_coordinator(coordinator)
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
    result = subprocess.run(
        [sys.executable, "-m", "sdk.run", str(module_dir)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
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
        result = subprocess.run(
            [sys.executable, "-m", "sdk.run", str(GREETER), "--listen", f"127.0.0.1:{port}"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )
    assert result.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}" in result.stderr
