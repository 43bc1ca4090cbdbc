"""Restarts that users do not notice, and modules that stop answering: real `mesh up`, real
module processes, real gRPC.

A restart on request starts the new process beside the old one, points dependents at it and
drains the old one, so calls in flight through a dependent never fail; a restart that
cannot come up leaves the old process serving; a crashed module comes back on its port; a
stopped (SIGSTOP) module is found by the liveness watch and restarted; a registration whose
process is gone leaves the registry.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import grpc
import pytest

from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, health_pb2
from meshkit import MeshDir, RunningMesh
from sdk import State

CLIENTS = 20
SHORT_LIVENESS = {
    "MESH_LIVENESS_INTERVAL_SECONDS": "0.5",
    "MESH_LIVENESS_TIMEOUT_SECONDS": "2",
    "MESH_LIVENESS_MISSES": "3",
}


def _running(running: RunningMesh, name: str) -> coordinator_pb2.ModuleStatus | None:
    module = running.modules().get(name)
    return module if module is not None and State(module.state) is State.RUNNING else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_restart_under_load_fails_no_call_and_moves_the_dependent_to_the_new_process(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        before = running.wait_until_up()

        async def calls_through_a_restart() -> tuple[Counter[str], set[str]]:
            outcomes: Counter[str] = Counter()
            answers: set[str] = set()
            restarted = asyncio.Event()

            async def client(stub: greeter_pb2_grpc.GreeterStub) -> None:
                after_restart = 0
                while after_restart < 5:  # and a few calls once the restart has returned
                    try:
                        reply = await stub.SayHello(greeter_pb2.SayHelloRequest(name="via:base:x"), timeout=60)
                        outcomes["OK"] += 1
                        answers.add(reply.message)
                    except grpc.aio.AioRpcError as error:
                        outcomes[error.code().name] += 1
                    if restarted.is_set():
                        after_restart += 1

            async with running.channel(before["app"].address) as channel, running.channel() as control:
                stub = greeter_pb2_grpc.GreeterStub(channel)
                await stub.SayHello(greeter_pb2.SayHelloRequest(name="via:base:warm-up"), timeout=60)
                clients = [asyncio.create_task(client(stub)) for _ in range(CLIENTS)]
                coordinator = coordinator_pb2_grpc.CoordinatorStub(control)
                await coordinator.RestartModule(coordinator_pb2.RestartModuleRequest(name="base"), timeout=120)
                restarted.set()
                await asyncio.gather(*clients)
            return outcomes, answers

        outcomes, answers = asyncio.run(calls_through_a_restart())
        after = running.modules()
        assert set(outcomes) == {"OK"}, f"calls failed during the restart: {dict(outcomes)}"
        assert after["base"].pid != before["base"].pid and after["base"].restart_count == 1
        assert State(after["app"].state) is State.RUNNING and after["app"].pid == before["app"].pid
        assert f"app via base pid {after['base'].pid}: hello x" in answers  # the dependent moved over
        assert not _alive(before["base"].pid)  # drained and ended before RestartModule returned


def test_a_restart_that_cannot_start_leaves_the_old_process_serving(tmp_path):
    mesh = MeshDir(tmp_path)
    folder = mesh.module("base")
    with mesh.up() as running:
        before = running.wait_until_up()["base"]
        (folder / "module.py").write_text('raise RuntimeError("broken on purpose")\n')
        env = mesh.environment(MESH_STATE_DIR=str(mesh.state))
        restart = mesh.run_cli("restart", "base", env=env)
        assert restart.returncode != 0
        assert f"process {before.pid} keeps serving" in restart.stderr and "Traceback" not in restart.stderr
        after = running.modules()["base"]
        assert State(after.state) is State.RUNNING and after.pid == before.pid and after.address == before.address

        async def hello() -> str:
            async with running.channel(before.address) as channel:
                reply = await greeter_pb2_grpc.GreeterStub(channel).SayHello(
                    greeter_pb2.SayHelloRequest(name="still"), timeout=60
                )
                return reply.message

        assert asyncio.run(hello()) == f"base pid {before.pid}: hello still"


def test_a_crashed_module_comes_back_on_its_old_port(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up() as running:
        before = running.wait_until_up()["base"]
        os.kill(before.pid, signal.SIGKILL)

        def back() -> coordinator_pb2.ModuleStatus | None:
            module = _running(running, "base")
            return module if module is not None and module.pid != before.pid else None

        after = running.wait_for(back, "base to run again after its crash")
        assert after.address == before.address


def test_a_stopped_module_is_found_by_liveness_and_restarted(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up(**SHORT_LIVENESS) as running:
        before = running.wait_until_up()["base"]
        os.kill(before.pid, signal.SIGSTOP)

        def replaced() -> coordinator_pb2.ModuleStatus | None:
            module = _running(running, "base")
            return module if module is not None and module.pid != before.pid else None

        after = running.wait_for(replaced, "the stopped base to be replaced")
        assert after.restart_count == 1
        running.wait_for(lambda: "does not answer health" in running.text, "the liveness failure in the log")
        assert not _alive(before.pid)


def test_a_registration_whose_process_is_gone_leaves_the_registry(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    outside = MeshDir(tmp_path / "elsewhere")
    folder = outside.module("visitor", depends=["base"])
    with mesh.up(**SHORT_LIVENESS) as running:
        running.wait_until_up()
        with running.registered(folder, tmp_path / "visitor-tls"):
            running.wait_for(lambda: _running(running, "visitor"), "the visitor to be registered and running")
        running.wait_for(lambda: "visitor" not in running.modules(), "the gone visitor to leave the registry")
        assert "visitor" not in running.modules()["base"].dependents


def test_a_module_whose_required_dependency_failed_is_unhealthy_and_says_why(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base", restart="never")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        before = running.wait_until_up()
        os.kill(before["base"].pid, signal.SIGKILL)
        running.wait_for(lambda: State(running.modules()["base"].state) is State.FAILED, "base to be FAILED")
        reply = running.call(
            lambda stub: stub.GetSystemHealth(coordinator_pb2.GetSystemHealthRequest(fresh=True), timeout=60)
        )
        app = next(module for module in reply.modules if module.name == "app")
        assert app.status == health_pb2.HEALTH_STATUS_UNHEALTHY
        [component] = [c for c in app.components if c.name == "dependency:base"]
        assert component.status == health_pb2.HEALTH_STATUS_UNHEALTHY
        assert component.message.startswith("requires base, which is FAILED")
        shown = mesh.run_cli("health", env=mesh.environment(MESH_STATE_DIR=str(mesh.state), COLUMNS="1000"))
        assert shown.returncode != 0 and "requires base, which is FAILED" in shown.stdout

        async def via_app() -> grpc.aio.AioRpcError:
            async with running.channel(before["app"].address) as channel:
                stub = greeter_pb2_grpc.GreeterStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.SayHello(greeter_pb2.SayHelloRequest(name="via:base:x"), timeout=60)
                return failed.value

        # The dependency's UNAVAILABLE reaches the caller as UNAVAILABLE (retriable), not UNKNOWN.
        failed = asyncio.run(via_app())
        assert failed.code() is grpc.StatusCode.UNAVAILABLE
        assert "a call this one depends on failed" in failed.details()
