"""Ctrl-C on `mesh up`, as a terminal sends it: to the whole foreground process group.

The modules and the embedded nats-server run in sessions of their own, so only the
coordinator gets the signal; it stops the modules in reverse dependency order, then NATS,
and says so in one line on stderr. A second signal while it stops kills what is left.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psutil
import pytest

from meshkit import WAIT_SECONDS, MeshDir, RunningMesh, gone, up_in_own_group
from sdk import State

SUMMARY = r"mesh stopped: (?P<modules>\d+) modules? in \d+\.\d s"


def everything_it_runs(running: RunningMesh) -> set[int]:
    """The pids of the modules (as the coordinator lists them) and of every process below
    `mesh up`, the nats-server among them."""
    modules = running.wait_until_up()
    assert {State(module.state) for module in modules.values()} == {State.RUNNING}, running.text
    pids = running.module_pids()
    assert {module.pid for module in modules.values()} <= pids
    names = {psutil.Process(pid).name() for pid in pids}
    assert "nats-server" in names, names
    return pids


def stop_of(log: Path) -> list[str]:
    """What a module logged from the moment it was asked to stop."""
    lines = log.read_text().splitlines()
    began = [index for index, line in enumerate(lines) if " stopping (" in line]
    return lines[began[-1] :] if began else []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_group_stops_the_mesh_in_order_with_one_line(tmp_path, signum):
    mesh = MeshDir(tmp_path)
    mesh.module("base", publishes=["greeting.sent"])
    mesh.module("app", depends=["base"], subscribes=["greeting.sent"], cls="Listener")
    mesh.module("solo")
    errors = tmp_path / "stderr.log"
    with up_in_own_group(mesh, errors) as running:
        pids = everything_it_runs(running)
        os.killpg(running.process.pid, signum)
        code = running.process.wait(timeout=WAIT_SECONDS)
    assert code == 0, errors.read_text()
    summary = re.fullmatch(SUMMARY + "\n", errors.read_text())
    assert summary is not None and summary["modules"] == "3", errors.read_text()
    assert gone(pids), "a process of the mesh outlived mesh up"
    stops = [name for event, name in mesh.records() if event == "stop"]
    assert sorted(stops) == ["app", "base", "solo"]
    assert stops.index("app") < stops.index("base")
    for name in ("base", "app", "solo"):
        stopping = stop_of(mesh.state / "logs" / f"{name}.log")
        assert stopping, f"{name} logged no stop"
        noise = [line for line in stopping if any(word in line for word in ("WARNING", "ERROR", "Traceback"))]
        assert noise == [], "\n".join(stopping)


def test_a_second_signal_kills_what_is_still_stopping_and_exits_130(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    stuck = mesh.module("stuck", depends=["base"])
    (stuck / "module.py").write_text(
        "import asyncio\n\nimport sdk\n\n\nclass Module(sdk.Module):\n"
        "    async def stop(self) -> None:\n        await asyncio.Event().wait()  # never returns\n"
    )
    mesh.write_config("stop_grace_seconds = 3600\n")
    errors = tmp_path / "stderr.log"
    with up_in_own_group(mesh, errors) as running:
        pids = everything_it_runs(running)
        os.killpg(running.process.pid, signal.SIGINT)
        running.wait_for(lambda: "stuck: STOPPING" in running.text, "the stuck module to be stopping")
        os.killpg(running.process.pid, signal.SIGINT)
        code = running.process.wait(timeout=WAIT_SECONDS)
    assert code == 128 + signal.SIGINT, errors.read_text()
    assert re.fullmatch(SUMMARY + r"; 2 killed at once after a second interrupt\n", errors.read_text()), (
        errors.read_text()
    )
    assert gone(pids), "a process of the mesh outlived mesh up"


def test_a_second_mesh_up_of_a_running_mesh_is_refused_in_one_line(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        before = running.wait_until_up()
        same_folder = mesh.run_cli(*mesh.up_args())
        assert same_folder.returncode == 1, same_folder.stderr
        assert same_folder.stdout == ""
        assert re.fullmatch(
            r"mesh up: another coordinator \(pid \d+, \S+\) is running with state folder .*; "
            r"stop it \(mesh down\) or pass another --state-dir\n",
            same_folder.stderr,
        ), same_folder.stderr

        address = running.address
        other_folder = mesh.run_cli(*mesh.up_args(), "--state-dir", str(tmp_path / "other"), "--listen", address)
        assert other_folder.returncode == 1, other_folder.stderr
        assert other_folder.stdout == ""
        assert other_folder.stderr == f"mesh up: the coordinator cannot listen on {address}; is the port in use? " + (
            "(--listen or MESH_LISTEN)\n"
        )

        after = running.modules()
        assert {name: (m.state, m.pid) for name, m in after.items()} == {
            name: (m.state, m.pid) for name, m in before.items()
        }
