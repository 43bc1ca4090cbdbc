"""Module processes forked from the zygote: real `mesh up`, real processes, real gRPC.

`mesh up` starts one zygote that has imported what a module process imports and forks every
Python module from it (MESH_ZYGOTE=0: fresh processes). The zygote is a convenience, never a
single point of failure: killed, it takes no module with it, and modules started after it
start as fresh processes.
"""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from meshkit import MeshDir, RunningMesh, gone
from sdk import State

pytestmark = pytest.mark.e2e


def zygote_of(running: RunningMesh) -> psutil.Process | None:
    """The zygote `mesh up` started, if there is one."""
    for child in psutil.Process(running.process.pid).children():
        if "sdk.zygote" in child.cmdline():
            return child
    return None


def hello(running: RunningMesh, address: str, name: str) -> str:
    async def call() -> str:
        async with running.channel(address) as channel:
            reply = await greeter_pb2_grpc.GreeterStub(channel).SayHello(greeter_pb2.SayHelloRequest(name=name))
            return reply.message

    return asyncio.run(call())


def test_python_modules_are_forked_from_one_zygote(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        modules = running.wait_until_up()
        zygote = zygote_of(running)
        assert zygote is not None, running.text
        for name in ("base", "app"):
            assert psutil.Process(modules[name].pid).ppid() == zygote.pid
            log = (mesh.state / "logs" / f"{name}.log").read_text()
            assert f"(forked from the zygote, pid {zygote.pid})" in log
        # the forked modules serve, and reach each other, as fresh processes would
        assert (
            hello(running, modules["app"].address, "via:base:ada")
            == f"app via base pid {modules['base'].pid}: hello ada"
        )


def test_without_the_zygote_every_module_is_a_fresh_process(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up(MESH_ZYGOTE="0") as running:
        modules = running.wait_until_up()
        assert zygote_of(running) is None
        assert psutil.Process(modules["base"].pid).ppid() == running.process.pid
        assert hello(running, modules["base"].address, "ada") == f"base pid {modules['base'].pid}: hello ada"


def test_a_killed_zygote_takes_no_module_with_it_and_later_modules_start_fresh(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        before = running.wait_until_up()
        zygote = zygote_of(running)
        assert zygote is not None
        zygote.kill()
        zygote.wait(timeout=30)
        running.wait_for(lambda: "the zygote (pid" in running.text, "the coordinator to report the zygote's end")

        # the modules it forked keep serving, in the same processes
        assert hello(running, before["app"].address, "via:base:x") == f"app via base pid {before['base'].pid}: hello x"
        assert {name: module.pid for name, module in running.modules().items()} == {
            name: module.pid for name, module in before.items()
        }

        # a crashed module comes back, as a fresh process of the coordinator's own
        os.kill(before["base"].pid, signal.SIGKILL)

        def back() -> object:
            module = running.modules().get("base")
            running_again = module is not None and State(module.state) is State.RUNNING
            return module if running_again and module.pid != before["base"].pid else None

        after = running.wait_for(back, "base to run again after its crash")
        assert psutil.Process(after.pid).ppid() == running.process.pid
        assert "modules start as fresh processes" in running.text
        assert hello(running, after.address, "again") == f"base pid {after.pid}: hello again"


def test_no_zygote_outlives_a_killed_coordinator(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up() as running:
        running.wait_until_up()
        zygote = zygote_of(running)
        assert zygote is not None
        pids = running.module_pids()
        assert zygote.pid in pids
        running.process.kill()
        running.process.wait()
        assert gone(pids), "the zygote or a module outlived the killed coordinator"
