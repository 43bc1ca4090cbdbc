"""Build a mesh of test modules in a scratch folder and run `mesh up` on it as a real process.

mesh = MeshDir(tmp_path)
mesh.module("base")
mesh.module("app", depends=["base"], config={"init_seconds": 0.2})
with mesh.up() as running:
    running.wait_until_up()
    ...
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import nats
import psutil
from nats.aio.msg import Msg

from conftest import PROJECT
from mesh.control.nats_identities import admin_login
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, lifecycle_pb2
from sdk import State

WAIT_SECONDS = 90  # an upper bound for things to happen, never a speed assertion
# Top-level keys of every test mesh.toml: the coordinator's calls to a module (health, metrics,
# readiness) get upper bounds a loaded machine stays under, so a slow answer is not a failure.
TEST_MESH_SETTINGS = "health_timeout_seconds = 30\nready_timeout_seconds = 180\n"
SETTLED = {State.RUNNING.value, State.FAILED.value, State.SKIPPED.value, State.STOPPED.value}
T = TypeVar("T")


class MeshDir:
    """A modules folder of Node modules, a mesh.toml, and a record file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules = root / "modules"
        self.modules.mkdir(parents=True, exist_ok=True)
        self.state = root / ".mesh"
        self.record_file = root / "record.log"
        self.record_file.touch()
        self._configs: dict[str, dict[str, Any]] = {}

    def module(
        self,
        name: str,
        *,
        depends: list[str] = (),
        optional: list[str] = (),
        version: str = "1.0.0",
        constraints: dict[str, str] | None = None,
        flag: str | None = None,
        config: dict[str, Any] | None = None,
        restart: str = "on-failure",
        publishes: list[str] = (),
        subscribes: list[str] = (),
        cls: str = "Node",
        requires_tenant: bool = False,
    ) -> Path:
        folder = self.modules / name.replace("-", "_")
        folder.mkdir(exist_ok=True)
        lines = [f'name = "{name}"', f'version = "{version}"', f'description = "test module {name}"']
        if flag:
            lines.append(f'feature_flag = "{flag}"')
        if requires_tenant:
            lines.append("requires_tenant = true")
        for dependency in depends:
            constraint = (constraints or {}).get(dependency, "")
            lines += ["[[dependencies]]", f'name = "{dependency}"', f'version = "{constraint}"']
        for dependency in optional:
            lines += ["[[dependencies]]", f'name = "{dependency}"', "optional = true"]
        if publishes or subscribes:
            lines += [
                "[events]",
                f"publishes = {json.dumps(list(publishes))}",
                f"subscribes = {json.dumps(list(subscribes))}",
            ]
        lines += ["[restart]", f'policy = "{restart}"', "backoff_initial_seconds = 0.1"]
        lines += ["[run]", 'entry = "module:Module"']
        (folder / "module.toml").write_text("\n".join(lines) + "\n")
        (folder / "__init__.py").write_text("")
        (folder / "module.py").write_text(f"from meshnode import {cls}\n\n\nclass Module({cls}):\n    pass\n")
        if config:
            self._configs[name] = config
        return folder

    def write_config(self, text: str | None = None) -> Path:
        """Write mesh.toml: the timeouts of a test mesh, then `text` or the modules' configs.

        A mesh.toml the test wrote itself without this call is left as it is.
        """
        path = self.root / "mesh.toml"
        if text is not None:
            path.write_text(TEST_MESH_SETTINGS + text)
            return path
        if not self._configs and path.exists():
            return path
        lines = [TEST_MESH_SETTINGS]
        for name, config in self._configs.items():
            lines.append(f'[modules."{name}".config]')
            lines += [f"{key} = {json.dumps(value)}" for key, value in config.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def environment(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(PROJECT / "tests" / "fixtures"), str(PROJECT / "modules")]),
            "MESH_TEST_RECORD": str(self.record_file),
            # A loaded test machine may keep a module from answering for seconds: only a test
            # of liveness asks for a short timeout.
            "MESH_LIVENESS_TIMEOUT_SECONDS": "30",
            # `mesh up`'s HTTP gateway on a free port, never the fixed default.
            "MESH_GATEWAY_LISTEN": "127.0.0.1:0",
            **extra,
        }

    def records(self) -> list[tuple[str, str]]:
        """(event, module) in the order they were written.

        Every process appends whole lines, so the file's order is causal (a record written
        before a call is answered comes before the records that call leads to); a last line
        without its newline is still being written and is left out.
        """
        complete = self.record_file.read_text().rpartition("\n")[0]
        return [(event, name) for _, event, name in (line.split() for line in complete.splitlines() if line.strip())]

    def mesh_command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mesh.cli", *args]

    def run_cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.mesh_command(*args),
            cwd=self.root,
            env=env or self.environment(),
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )

    def up_args(self) -> list[str]:
        return [
            "up",
            "--modules",
            str(self.modules),
            "--state-dir",
            str(self.state),
            "--listen",
            "127.0.0.1:0",
            "--config",
            str(self.write_config()),
        ]

    @contextmanager
    def up(self, *args: str, **env: str) -> Iterator[RunningMesh]:
        """`mesh up` (with `args` after the usual ones) as a process; everything it started is
        killed at the end, also on failure."""
        process = subprocess.Popen(
            self.mesh_command(*self.up_args(), *args),
            cwd=self.root,
            env=self.environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running = RunningMesh(self, process)
        try:
            yield running
        finally:
            running.kill_everything()


class RunningMesh:
    """A running `mesh up` process and what it spawned."""

    def __init__(self, mesh: MeshDir, process: subprocess.Popen[str]) -> None:
        self.mesh = mesh
        self.process = process
        self.output: list[str] = []
        self._seen_pids: set[int] = set()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    @property
    def address(self) -> str:
        """The coordinator's gRPC address."""
        return self._coordinator_info()["address"]

    @property
    def nats_url(self) -> str:
        """The URL of the mesh's NATS server (the embedded one `mesh up` started)."""
        return self._coordinator_info()["nats_url"]

    def nats_login(self) -> dict[str, Any]:
        """The operator's NATS login (nats-py connect options) of this mesh, as the CLI uses it."""
        return admin_login(self.mesh.state / "nats-access").connect_options()

    def module_nats(self, module: str) -> lifecycle_pb2.NatsSettings:
        """The NATS settings the coordinator gives `module` (its user, from the server's
        configuration), for a replica a test brings up itself."""
        users = json.loads((self.mesh.state / "nats-access" / "server.conf").read_text())["authorization"]["users"]
        (password,) = [user["password"] for user in users if user["user"] == module]
        return lifecycle_pb2.NatsSettings(servers=[self.nats_url], user=module, password=password)

    def _coordinator_info(self) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        info_file = self.mesh.state / "coordinator.json"
        while time.monotonic() < deadline:
            if info_file.exists():
                return json.loads(info_file.read_text())
            if self.process.poll() is not None:
                raise AssertionError(f"mesh up exited with {self.process.returncode}:\n{self.text}")
            time.sleep(0.05)
        raise AssertionError(f"the coordinator did not come up:\n{self.text}")

    @contextmanager
    def subjects(self, pattern: str) -> Iterator[list[str]]:
        """The subjects of the NATS messages on `pattern`, in arrival order, recorded by a
        background thread from before the block starts until it ends."""
        seen: list[str] = []
        subscribed = threading.Event()
        done = threading.Event()
        failure: list[BaseException] = []

        async def listen() -> None:
            client = await nats.connect(self.nats_url, **self.nats_login())
            try:

                async def keep(message: Msg) -> None:
                    seen.append(message.subject)

                await client.subscribe(pattern, cb=keep)
                await client.flush()
                subscribed.set()
                await asyncio.to_thread(done.wait)
            finally:
                await client.close()

        def run() -> None:
            try:
                asyncio.run(listen())
            except BaseException as error:  # handed to the test thread below
                failure.append(error)
                subscribed.set()

        listener = threading.Thread(target=run, daemon=True)
        listener.start()
        if not subscribed.wait(WAIT_SECONDS) or failure:
            done.set()
            raise AssertionError(f"could not subscribe to {pattern}: {failure}")
        try:
            yield seen
        finally:
            done.set()
            listener.join(WAIT_SECONDS)

    @property
    def transport(self) -> Transport:
        """How a test reaches the mesh: with the admin credentials `mesh up` wrote into its state
        folder (coordinator.json names them), or plaintext when it runs --insecure."""
        info = self._coordinator_info()
        return Transport(Path(info["credentials"]) if info.get("tls") else None)

    def channel(self, address: str | None = None, *, as_coordinator: bool = False) -> grpc.aio.Channel:
        """A channel to the coordinator (or a module at `address`) as the mesh's admin, or with
        the coordinator's own certificate (a module's Lifecycle answers only that one)."""
        transport = self.transport
        if as_coordinator and transport.secure:
            transport = Transport(self.mesh.state / "pki" / "coordinator")
        return transport.channel(address or self.address)

    def grpcurl_flags(self, role: str | None = None) -> list[str]:
        """What `mesh creds grpcurl-flags [--role ROLE]` prints for this mesh, as arguments."""
        chosen = ("--role", role) if role else ()
        printed = self.mesh.run_cli("creds", "grpcurl-flags", "--state-dir", str(self.mesh.state), *chosen)
        assert printed.returncode == 0, printed.stderr
        return printed.stdout.split()

    def call(self, make_call: Callable[[coordinator_pb2_grpc.CoordinatorStub], Any]) -> Any:
        async def run() -> Any:
            async with self.channel() as channel:
                return await make_call(coordinator_pb2_grpc.CoordinatorStub(channel))

        return asyncio.run(run())

    def modules(self) -> dict[str, coordinator_pb2.ModuleStatus]:
        reply = self.call(lambda stub: stub.ListModules(coordinator_pb2.ListModulesRequest(), timeout=WAIT_SECONDS))
        for module in reply.modules:
            if module.pid:
                self._seen_pids.add(module.pid)
        return {module.name: module for module in reply.modules}

    def wait_until_up(self, *, failures_expected: bool = False) -> dict[str, coordinator_pb2.ModuleStatus]:
        """Until `mesh up` reports the mesh up; returns the modules.

        A module that failed to start fails the test here, with `mesh up`'s report of it,
        unless the test expects failures: otherwise the test would only time out later,
        waiting for a module that is not there.
        """
        self.wait_for(lambda: "mesh is up" in self.text, "mesh up to report the mesh up")
        modules = self.modules()
        failed = sorted(name for name, module in modules.items() if module.state == State.FAILED.value)
        if failed and not failures_expected:
            raise AssertionError(f"module(s) {', '.join(failed)} failed to start:\n{self.text}")
        return modules

    def wait_for(self, condition: Callable[[], T], what: str) -> T:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None and not condition():
                raise AssertionError(f"mesh up exited with {self.process.returncode} waiting for {what}:\n{self.text}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.text}")

    def module_pids(self) -> set[int]:
        """Every process below `mesh up` now, plus every module pid seen before."""
        try:
            children = {child.pid for child in psutil.Process(self.process.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            children = set()
        self._seen_pids |= children
        return set(self._seen_pids)

    def signal_and_wait(self, signum: int) -> int:
        self.module_pids()
        self.process.send_signal(signum)
        return self.process.wait(timeout=WAIT_SECONDS)

    @contextmanager
    def registered(self, folder: Path, credentials: Path) -> Iterator[subprocess.Popen[bytes]]:
        """The module in `folder` started outside the mesh (as on another host) with its own
        credentials (`mesh creds issue` writes them to `credentials`), registering itself with
        this mesh's coordinator; killed at the end."""
        name = folder.name.replace("_", "-")
        issued = self.mesh.run_cli("creds", "issue", "--module", name, "--out", str(credentials))
        assert issued.returncode == 0, issued.stderr
        process = subprocess.Popen(
            [sys.executable, "-m", "sdk.run", str(folder)],
            env=self.mesh.environment(MESH_COORDINATOR=self.address, MESH_TLS_DIR=str(credentials)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield process
        finally:
            process.kill()
            process.wait()

    def kill_everything(self) -> None:
        pids = self.module_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        self._reader.join(timeout=5)


@contextmanager
def up_in_own_group(mesh: MeshDir, errors: Path, *args: str) -> Iterator[RunningMesh]:
    """`mesh up` in a process group of its own (as a shell runs a foreground job, whose Ctrl-C
    goes to that whole group), its stderr
    kept apart in `errors`; everything it started is killed at the end, also on failure."""
    with open(errors, "w") as stderr:
        process = subprocess.Popen(
            mesh.mesh_command(*mesh.up_args(), *args),
            cwd=mesh.root,
            env=mesh.environment(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    running = RunningMesh(mesh, process)
    try:
        yield running
    finally:
        running.kill_everything()


def gone(pids: set[int]) -> bool:
    """Whether every process in `pids` has ended (zombies awaiting a reaper count as ended)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False
