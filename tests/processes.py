"""Module processes for tests: `python -m sdk.run` started by the test, driven through
their Lifecycle service, and killed at teardown, also on failure.

Each process serves mTLS with a module certificate from a CA of the test (or of the mesh it
joins: `spawn(..., pki=mesh.state / "pki")`); the test drives Lifecycle as the coordinator
of that CA. A process started with MESH_INSECURE=1 in `env` serves plaintext instead."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conftest import PROJECT
from mesh.protocol.identity import COORDINATOR, module_identity
from mesh.protocol.pki import CertificateAuthority
from mesh.protocol.transport import INSECURE_ENV, TLS_DIR_ENV, Transport
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc

WAIT_SECONDS = 60  # an upper bound for things to happen, never a speed assertion


class ModuleProcess:
    """A module process started by a test, with its ready file and log."""

    def __init__(self, popen: subprocess.Popen[bytes], ready_file: Path, log: Path, transport: Transport) -> None:
        self.transport = transport
        """How the test dials the module: as the coordinator of the module's CA, or plaintext."""
        self.popen = popen
        self.ready_file = ready_file
        self.log = log

    def ready(self) -> dict[str, Any]:
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

    def lifecycle(self, call: str, request: Any) -> Any:
        """One Lifecycle call, e.g. `lifecycle("Start", StartRequest())`."""

        async def run() -> Any:
            async with self.transport.channel(self.address) as channel:
                return await getattr(lifecycle_pb2_grpc.LifecycleStub(channel), call)(request, timeout=WAIT_SECONDS)

        return asyncio.run(run())

    def bring_up(self, settings: lifecycle_pb2.ModuleSettings | None = None) -> None:
        self.lifecycle("Initialize", lifecycle_pb2.InitializeRequest(settings=settings))
        self.lifecycle("Start", lifecycle_pb2.StartRequest())

    def stop(self) -> int:
        """Stop through Lifecycle, then end the process; returns its exit code."""
        self.lifecycle("Stop", lifecycle_pb2.StopRequest(reason="test"))
        self.popen.terminate()
        return self.popen.wait(timeout=WAIT_SECONDS)


def settings(
    *,
    nats_url: str = "",
    nats: lifecycle_pb2.NatsSettings | None = None,
    config: dict[str, Any] | None = None,
    dependencies: dict[str, str] | None = None,
) -> lifecycle_pb2.ModuleSettings:
    """What a test that plays the coordinator sends at Initialize (`nats`: a mesh's NATS with
    a module's login, see RunningMesh.module_nats)."""
    result = lifecycle_pb2.ModuleSettings(
        nats=nats or lifecycle_pb2.NatsSettings(servers=[nats_url] if nats_url else []),
        dependencies=[
            lifecycle_pb2.DependencyEndpoint(name=name, address=address, available=True)
            for name, address in (dependencies or {}).items()
        ],
    )
    result.config.update(config or {})
    return result


@pytest.fixture
def spawn(tmp_path):
    """Starts module processes; kills whatever is left at teardown, also on failure."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        module_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: Any = subprocess.DEVNULL,
        pki: Path | None = None,
    ) -> ModuleProcess:
        index = len(started)
        transport_env, transport = _credentials(pki or tmp_path / "pki", module_dir, tmp_path / f"tls-{index}", env)
        ready_file = tmp_path / f"ready-{index}.json"
        log = tmp_path / f"module-{index}.log"
        environment = {
            **os.environ,
            "MESH_READY_FILE": str(ready_file),
            "MESH_STATE_DIR": str(tmp_path / f"state-{index}"),
            "PYTHONPATH": os.pathsep.join([str(PROJECT / "modules"), str(PROJECT / "tests" / "fixtures" / "modules")]),
            **transport_env,
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
        return ModuleProcess(popen, ready_file, log, transport)

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait()


def _credentials(
    pki: Path, module_dir: Path, folder: Path, env: dict[str, str] | None
) -> tuple[dict[str, str], Transport]:
    """The module's MESH_TLS_DIR (its certificate from the CA in `pki`, made when absent) and
    the coordinator's transport of that CA; plaintext when `env` asks for MESH_INSECURE."""
    if (env or {}).get(INSECURE_ENV):
        return {}, Transport(None)
    name = tomllib.loads((module_dir / "module.toml").read_text())["name"]
    authority = CertificateAuthority.load_or_create(pki)
    authority.issue(module_identity(name).common_name).write(folder)
    coordinator = pki / "test-coordinator"
    if not (coordinator / "cert.pem").exists():
        authority.issue(COORDINATOR.common_name).write(coordinator)
    return {TLS_DIR_ENV: str(folder)}, Transport(coordinator)
