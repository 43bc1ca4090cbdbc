"""The coordinator end to end: `mesh up` as a real process spawning real module processes,
a real nats-server, real gRPC. Each test builds its own mesh in a scratch folder."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess

import grpc
import pytest

from conftest import PROJECT, tool
from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, module_pb2
from meshkit import WAIT_SECONDS, MeshDir, gone
from sdk import State

pytestmark = pytest.mark.e2e

FIXTURES = PROJECT / "tests" / "fixtures" / "modules"


def diamond(mesh: MeshDir) -> None:
    """Seven modules: a diamond (base <- left, right <- top <- app), an independent module,
    and one with optional dependencies (one absent)."""
    mesh.module("base", config={"init_seconds": 0.2})
    mesh.module("left", depends=["base"], config={"rendezvous": "right"})
    mesh.module("right", depends=["base"], config={"rendezvous": "left"})
    mesh.module("top", depends=["left", "right"])
    mesh.module("app", depends=["top"])
    mesh.module("solo")
    mesh.module("extras", optional=["solo", "absent"])


def test_a_diamond_comes_up_in_dependency_order_and_stops_in_reverse(tmp_path):
    mesh = MeshDir(tmp_path)
    diamond(mesh)
    with mesh.up() as running:
        modules = running.wait_until_up()
        assert {name: State(m.state).name for name, m in modules.items()} == dict.fromkeys(
            ["base", "left", "right", "top", "app", "solo", "extras"], "RUNNING"
        )
        assert all(m.address and m.pid for m in modules.values())
        assert modules["base"].critical and not modules["app"].critical
        assert sorted(modules["base"].dependents) == ["left", "right"]

        records = mesh.records()
        began = {name: i for i, (event, name) in enumerate(records) if event == "begin"}
        started = {name: i for i, (event, name) in enumerate(records) if event == "started"}
        for name, dependencies in {
            "left": ["base"],
            "right": ["base"],
            "top": ["left", "right"],
            "app": ["top"],
        }.items():
            for dependency in dependencies:
                assert started[dependency] < began[name], f"{name} began before {dependency} was started"
        # left and right each waited (in initialize) for the other to begin: they overlapped.
        ended = {name: i for i, (event, name) in enumerate(records) if event == "end"}
        assert began["left"] < ended["right"] and began["right"] < ended["left"]

        pids = running.module_pids()
        assert running.signal_and_wait(signal.SIGINT) == 0

    stops = [name for event, name in mesh.records() if event == "stop"]
    assert sorted(stops) == sorted(modules)
    for dependent, dependency in [
        ("app", "top"),
        ("top", "left"),
        ("top", "right"),
        ("left", "base"),
        ("right", "base"),
    ]:
        assert stops.index(dependent) < stops.index(dependency), f"{dependency} stopped before {dependent}"
    assert gone(pids), "module processes outlived mesh up"


def test_the_coordinator_api_health_and_reflection(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        running.wait_until_up()
        address = running.address
        flags = running.grpcurl_flags()

        def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [tool("grpcurl"), *flags, address, *args], capture_output=True, text=True, timeout=WAIT_SECONDS
            )

        listed = grpcurl("list")
        assert "mesh.v1.Coordinator" in listed.stdout.split()
        modules = grpcurl("mesh.v1.Coordinator/ListModules")
        answer = json.loads(modules.stdout)
        assert {(m["name"], m["state"]) for m in answer["modules"]} == {
            ("base", "MODULE_STATE_RUNNING"),
            ("app", "MODULE_STATE_RUNNING"),
        }
        assert all(m["address"] for m in answer["modules"])
        health = grpcurl("grpc.health.v1.Health/Check")
        assert '"status": "SERVING"' in health.stdout

        system = running.call(lambda stub: stub.GetSystemHealth(coordinator_pb2.GetSystemHealthRequest(fresh=True)))
        assert system.status == 1  # HEALTHY
        assert {m.name for m in system.modules} == {"base", "app"}

        graph = running.call(lambda stub: stub.GetGraph(coordinator_pb2.GetGraphRequest()))
        nodes = {node.name: node for node in graph.nodes}
        assert list(graph.initialization_order) == ["base", "app"]
        assert list(nodes["base"].transitive_dependents) == ["app"]
        assert nodes["app"].depth == 1

        metrics = running.call(lambda stub: stub.GetSystemMetrics(coordinator_pb2.GetSystemMetricsRequest()))
        assert {m.name for m in metrics.modules} == {"base", "app"}

        with pytest.raises(grpc.aio.AioRpcError) as missing:
            running.call(lambda stub: stub.GetModule(coordinator_pb2.GetModuleRequest(name="nope")))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        status = mesh.run_cli("status", "--coordinator", address)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "RUNNING" in status.stdout
        health_cli = mesh.run_cli("health", "--coordinator", address)
        assert health_cli.returncode == 0 and "healthy" in health_cli.stdout


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda m: (m.module("alpha", depends=["beta"]), m.module("beta", depends=["alpha"])),
            "circular dependency: alpha -> beta -> alpha",
        ),
        (lambda m: m.module("alpha", depends=["ghost"]), "module 'alpha' requires 'ghost', which is not in the mesh"),
        (
            lambda m: (
                m.module("alpha", depends=["beta"], constraints={"beta": "^2.0.0"}),
                m.module("beta", version="1.4.0"),
            ),
            "module 'alpha' requires 'beta' ^2.0.0, but 'beta' is version 1.4.0",
        ),
    ],
    ids=["cycle", "missing", "version"],
)
def test_an_invalid_graph_fails_before_any_process_starts(tmp_path, build, message):
    mesh = MeshDir(tmp_path)
    build(mesh)
    result = mesh.run_cli(*mesh.up_args())
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"mesh up: {message}" in result.stderr
    assert not (mesh.state / "logs").exists(), "a process was started"


def test_a_bad_manifest_fails_mesh_up_with_its_line(tmp_path):
    mesh = MeshDir(tmp_path)
    folder = mesh.module("alpha")
    (folder / "module.toml").write_text(
        (folder / "module.toml").read_text().replace('version = "1.0.0"', 'version = "1"')
    )
    result = mesh.run_cli(*mesh.up_args())
    assert result.returncode == 2
    assert f"{folder / 'module.toml'}: field 'version' has '1'" in result.stderr


def test_feature_flag_skips_cascade_and_optional_dependencies_degrade(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("beta", depends=["base"], flag="new-beta")
    mesh.module("gamma", depends=["beta"])
    mesh.module("delta", optional=["beta"])
    with mesh.up(FEATURE_FLAG_NEW_BETA="false") as running:
        modules = running.wait_until_up()
        assert State(modules["beta"].state) is State.SKIPPED
        assert modules["beta"].state_reason == "feature flag 'new-beta' is off (FEATURE_FLAG_NEW_BETA=false)"
        assert State(modules["gamma"].state) is State.SKIPPED
        assert modules["gamma"].state_reason == "requires 'beta', which is skipped"
        assert State(modules["delta"].state) is State.RUNNING
        assert State(modules["base"].state) is State.RUNNING
        assert "beta" not in {name for _, name in mesh.records()}


def test_a_critical_failure_aborts_and_stops_what_started(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("solo")
    mesh.module("base", config={"fail_in": "initialize", "rendezvous": "solo"})
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        code = running.process.wait(timeout=WAIT_SECONDS)
        pids = running.module_pids()
    assert code == 1, running.text
    assert "start-up aborted: critical module 'base' failed: HOOK_FAILED" in running.text
    assert "app: not started" in running.text
    assert "begin app" not in mesh.record_file.read_text()
    assert ("stop", "solo") in mesh.records()
    assert gone(pids)


def test_a_non_critical_failure_is_reported_and_the_rest_runs(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("leaf", depends=["base"], config={"fail_in": "start"})
    mesh.module("other", depends=["base"])
    with mesh.up() as running:
        modules = running.wait_until_up(failures_expected=True)
        assert State(modules["leaf"].state) is State.FAILED
        assert "leaf was told to fail in start" in modules["leaf"].error.message
        assert modules["leaf"].error.phase == "start"
        assert State(modules["other"].state) is State.RUNNING
        status = mesh.run_cli("status", "--coordinator", running.address)
        assert status.returncode == 1
        assert running.process.poll() is None


def test_a_killed_module_is_restarted_and_its_dependent_reaches_the_new_address(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        before = running.wait_until_up()
        os.kill(before["base"].pid, signal.SIGKILL)

        def restarted():
            modules = running.modules()
            base = modules["base"]
            return modules if base.restart_count == 1 and State(base.state) is State.RUNNING else None

        after = running.wait_for(restarted, "base to be restarted")
        assert after["base"].pid != before["base"].pid
        assert after["base"].address == before["base"].address  # back on its port, which was free
        assert after["app"].pid == before["app"].pid and State(after["app"].state) is State.RUNNING

        async def via_app() -> str:
            async with running.channel(after["app"].address) as channel:
                stub = greeter_pb2_grpc.GreeterStub(channel)
                reply = await stub.SayHello(greeter_pb2.SayHelloRequest(name="via:base:ping"), wait_for_ready=True)
                return reply.message

        # app was not torn down: its channel to base's address reaches the new process.
        assert asyncio.run(via_app()) == f"app via base pid {after['base'].pid}: hello ping"


def test_no_module_outlives_a_killed_coordinator(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        running.wait_until_up()
        pids = running.module_pids()
        assert len(pids) >= 3  # two modules and the embedded nats-server
        running.process.kill()
        running.process.wait()
        assert gone(pids), "processes outlived the killed coordinator"


def test_cli_down_graph_logs_reload(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"], optional=["extra"])
    text = mesh.run_cli("graph", "--modules", str(mesh.modules))
    assert text.returncode == 0
    assert text.stdout.splitlines() == ["app 1.0.0", "├── base 1.0.0", "└── extra  [missing]  (optional)"]
    mermaid = mesh.run_cli("graph", "--modules", str(mesh.modules), "--format", "mermaid")
    assert "app --> base" in mermaid.stdout and "app -.-> extra" in mermaid.stdout
    dot = mesh.run_cli("graph", "--modules", str(mesh.modules), "--format", "dot")
    assert '"app" -> "base";' in dot.stdout
    with mesh.up() as running:
        running.wait_until_up()
        env = mesh.environment(MESH_STATE_DIR=str(mesh.state))
        reload = mesh.run_cli("reload", "app", env=env)
        assert reload.returncode == 0, reload.stderr
        assert "app is RUNNING" in reload.stdout
        bad = mesh.run_cli("reload", "app", "--config", '{"colour": 1}', env=env)
        assert bad.returncode == 2 and "field 'colour'" in bad.stderr and "[INVALID_CONFIG]" in bad.stderr
        assert State(running.modules()["app"].state) is State.RUNNING  # an invalid reload changes nothing
        logs = mesh.run_cli("logs", "base", "--state-dir", str(mesh.state))
        assert "module base 1.0.0 serving on" in logs.stdout
        missing = mesh.run_cli("restart", "nope", env=env)
        assert missing.returncode == 2 and "no module 'nope'" in missing.stderr
        down = mesh.run_cli("down", env=env)
        assert down.returncode == 0, down.stderr
        assert running.process.wait(timeout=WAIT_SECONDS) == 0
    unreachable = mesh.run_cli("status", "--coordinator", "127.0.0.1:9")
    assert unreachable.returncode == 3 and "no coordinator answers" in unreachable.stderr


def test_watch_modules_streams_a_restart_and_reload_reads_the_config_file_again(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up() as running:
        running.wait_until_up()
        address = running.address

        async def watch_a_restart() -> list[tuple[str, bool, str]]:
            async with running.channel() as channel:
                stub = coordinator_pb2_grpc.CoordinatorStub(channel)
                stream = stub.WatchModules(coordinator_pb2.WatchModulesRequest(names=["base"], include_snapshot=True))
                seen: list[tuple[str, bool, str]] = []
                restarting = None
                async for change in stream:
                    reason = change.status.state_reason.split(":")[0]
                    seen.append((State(change.status.state).name, change.snapshot, reason))
                    if restarting is None:
                        restarting = asyncio.ensure_future(
                            stub.RestartModule(coordinator_pb2.RestartModuleRequest(name="base"))
                        )
                    elif reason == "restarted":
                        break
                stream.cancel()
                await restarting
                return seen

        # The new process starts beside the old one, which serves until the new one runs: the
        # module never leaves RUNNING (its successor's own steps are not the module's state).
        seen = asyncio.run(watch_a_restart())
        assert seen == [("RUNNING", True, ""), ("RUNNING", False, "restarting"), ("RUNNING", False, "restarted")]

        mesh.write_config('[modules.base.config]\nfail_in = "initialize"\n')
        reload = mesh.run_cli("reload", "base", "--coordinator", address)
        assert reload.returncode == 1
        assert "base was told to fail in initialize" in reload.stderr
        assert State(running.modules()["base"].state) is State.FAILED


def test_a_module_started_elsewhere_registers_and_is_brought_up(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    outside = MeshDir(tmp_path / "elsewhere")
    folder = outside.module("visitor", depends=["base"])
    with mesh.up() as running:
        running.wait_until_up()
        with running.registered(folder, tmp_path / "visitor-tls") as visitor:

            def visitor_running():
                module = running.modules().get("visitor")
                return module if module and State(module.state) is State.RUNNING else None

            module = running.wait_for(visitor_running, "the visitor to be registered and running")
            assert module.origin == module_pb2.MODULE_ORIGIN_REGISTERED
            assert module.pid == visitor.pid
            assert "visitor" in running.modules()["base"].dependents


def test_a_remote_module_of_the_mesh_configuration_is_sequenced_with_the_rest(tmp_path, spawn):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    elsewhere = MeshDir(tmp_path / "elsewhere")
    folder = elsewhere.module("faraway", depends=["base"])
    remote = spawn(folder, env=mesh.environment(), pki=mesh.state / "pki")
    mesh.write_config(f'[[remote]]\naddress = "{remote.address}"\n')
    with mesh.up() as running:
        modules = running.wait_until_up()
        assert State(modules["faraway"].state) is State.RUNNING
        assert modules["faraway"].origin == module_pb2.MODULE_ORIGIN_STATIC
        assert modules["faraway"].address == remote.address
        assert "faraway" in modules["base"].dependents
        assert running.signal_and_wait(signal.SIGINT) == 0
    stops = [name for event, name in mesh.records() if event == "stop"]
    assert stops == ["faraway", "base"]
