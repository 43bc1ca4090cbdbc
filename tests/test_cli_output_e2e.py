"""What `mesh` prints, run as a user runs it (a real subprocess against a real mesh): tables that
cut instead of wrapping and say "none", `--json` on every read command, numbers as given,
warnings where a user errs, "did you mean", `mesh logs` of every module, help that lists
every action, and shell completion generated from the parser."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.cli import _parser
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh

pytestmark = pytest.mark.e2e

COMMAND_ENV = ("MESH_COORDINATOR", "MESH_CREDS", "MESH_STATE_DIR", "NATS_URL", "COLUMNS", "NO_COLOR")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeshDir, RunningMesh]]:
    """base <- app, billing (a config schema), beta (skipped: its feature flag is off)."""
    folder = MeshDir(tmp_path_factory.mktemp("output"))
    folder.module("base")
    folder.module("app", depends=["base"])
    folder.module("billing", cls="Billing", subscribes=["greeting.sent"])
    folder.module("beta", flag="new-beta")
    with folder.up(FEATURE_FLAG_NEW_BETA="false") as running:
        running.wait_until_up()
        yield folder, running


def cli(folder: MeshDir, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`mesh ARGS` against the mesh of `folder` (its state folder), with `env` on top."""
    clean = {key: value for key, value in folder.environment().items() if key not in COMMAND_ENV}
    return folder.run_cli(*args, env={**clean, "MESH_STATE_DIR": str(folder.state), **env})


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_tables_cut_long_cells_with_an_ellipsis_and_an_empty_one_says_none(mesh, tmp_path):
    folder, _ = mesh
    events = MeshDir(tmp_path)
    events.module("shipping", publishes=["parcel.dispatched"])
    for name in ("accounting", "customer-notifications", "warehouse-robots", "analytics-pipeline"):
        events.module(name, subscribes=["parcel.dispatched"])
    narrow = ok(events.run_cli("events", "--modules", str(events.modules), env=events.environment(COLUMNS="60")))
    lines = narrow.stdout.splitlines()
    assert all(len(line) <= 60 for line in lines), narrow.stdout
    row = next(line for line in lines if "parcel.dispatched" in line)
    assert "shipping" in row and "…" in row, "the long subscriber list is cut on its one line"
    assert len([line for line in lines if line.startswith("│")]) == 1, "one row, not wrapped onto more lines"

    empty = MeshDir(tmp_path / "empty")
    nothing = ok(empty.run_cli("events", "--modules", str(empty.modules), env=empty.environment()))
    assert nothing.stdout.startswith("event types: none"), nothing.stdout

    letters = ok(cli(folder, "dlq", "list"))
    assert letters.stdout.strip() == "dead letters: none"
    flags = ok(cli(folder, "flags", "get", "nobody"))
    assert flags.stdout.strip() == "flags of tenant nobody: none"

    status = cli(folder, "status", COLUMNS="90")
    assert status.returncode == 0, status.stderr
    assert all(len(line) <= 90 for line in status.stdout.splitlines()), status.stdout
    for name in ("base", "app", "billing", "beta"):
        assert re.search(rf"│ {name} +│", status.stdout), f"{name} is whole in its row:\n{status.stdout}"
    assert "…" in status.stdout, "beta's skip reason is cut to fit"


def test_every_read_command_prints_json_with_the_same_exit_code(mesh):
    folder, _ = mesh
    modules = json.loads(ok(cli(folder, "status", "--json")).stdout)
    by_name = {module["name"]: module for module in modules}
    assert set(by_name) == {"base", "app", "billing", "beta"}
    assert by_name["app"]["state"] == "RUNNING" and isinstance(by_name["app"]["pid"], int)
    assert by_name["app"]["dependencies"] == [{"name": "base", "version": "", "optional": False}]
    assert by_name["base"]["dependents"] == ["app"] and by_name["base"]["critical"] is True
    assert by_name["beta"]["state"] == "SKIPPED" and by_name["beta"]["address"] is None
    assert "new-beta" in by_name["beta"]["state_reason"]
    assert ok(cli(folder, "status", "--names")).stdout.split() == [module["name"] for module in modules]

    table_health = cli(folder, "health")
    json_health = cli(folder, "health", "--json")
    assert json_health.returncode == table_health.returncode
    health = json.loads(json_health.stdout)
    assert health["status"] in ("healthy", "degraded", "unhealthy")
    assert {component["name"] for component in health["components"]} >= {"nats"}
    assert {module["name"] for module in health["modules"]} == {"base", "app", "billing"}

    graph = json.loads(ok(cli(folder, "graph", "--json", "--modules", str(folder.modules))).stdout)
    assert [node["name"] for node in graph] == ["app", "base", "beta", "billing"]
    assert graph[0]["dependencies"] == [{"name": "base", "version": "", "optional": False}]
    assert all(node["skipped"] is None for node in graph), "no flag is off for the CLI's own environment"

    catalog = json.loads(ok(cli(folder, "events", "--json", "--modules", str(folder.modules))).stdout)
    assert catalog == [
        {
            "type": "greeting.sent",
            "publishers": [],
            "subscribers": [{"module": "billing", "pattern": "greeting.sent", "handler": "heard"}],
            "content_type": "application/json",
            "schema": catalog[0]["schema"],
        }
    ]
    assert json.loads(ok(cli(folder, "dlq", "list", "--json")).stdout) == []

    address = json.loads(ok(cli(folder, "address", "app", "--json")).stdout)
    assert address == {"name": "app", "address": by_name["app"]["address"], "state": "RUNNING"}
    assert ok(cli(folder, "address", "app")).stdout.strip() == by_name["app"]["address"]

    ok(cli(folder, "tenant", "enable", "json-co", "billing"))
    listed = json.loads(ok(cli(folder, "tenant", "list", "json-co", "--json")).stdout)
    assert {entry["module"]: entry["enabled"] for entry in listed} == {"base": False, "app": False, "billing": True}
    billing = next(entry for entry in listed if entry["module"] == "billing")
    assert billing["changed_by"] and billing["changed_at"].endswith("Z")

    ok(cli(folder, "flags", "set", "json-co", "new-beta", "on"))
    flags = json.loads(ok(cli(folder, "flags", "get", "json-co", "--json")).stdout)
    assert [(flag["name"], flag["enabled"]) for flag in flags] == [("new-beta", True)]

    ok(cli(folder, "config", "set", "billing", "json-co", '{"currency": "EUR"}'))
    assert json.loads(ok(cli(folder, "config", "get", "billing", "json-co", "--json")).stdout) == {"currency": "EUR"}
    leaves = json.loads(ok(cli(folder, "config", "effective", "billing", "json-co", "--json")).stdout)
    assert {"path": "currency", "value": "EUR", "layer": "tenant"} in leaves
    assert {"path": "invoice.digits", "value": 6, "layer": "module default"} in leaves

    permissions = json.loads(ok(cli(folder, "nats", "permissions", "--json", "--module", "billing")).stdout)
    assert set(permissions) == {"billing"}


def test_numbers_are_printed_as_given(mesh):
    folder, _ = mesh
    ok(cli(folder, "tenant", "enable", "numbers-co", "billing"))
    stored = ok(cli(folder, "config", "set", "billing", "numbers-co", '{"invoice": {"digits": 5}, "tax_rate": 0.5}'))
    assert '"digits": 5,' in stored.stdout or '"digits": 5\n' in stored.stdout, stored.stdout
    assert "5.0" not in stored.stdout and '"tax_rate": 0.5' in stored.stdout
    shown = ok(cli(folder, "config", "get", "billing", "numbers-co"))
    assert json.loads(shown.stdout) == {"invoice": {"digits": 5}, "tax_rate": 0.5} and "5.0" not in shown.stdout
    table = ok(cli(folder, "config", "effective", "billing", "numbers-co", COLUMNS="200"))
    assert re.search(r"│ invoice\.digits +│ 5 +│ tenant", table.stdout), table.stdout
    leaves = json.loads(ok(cli(folder, "config", "effective", "billing", "numbers-co", "--json")).stdout)
    digits = next(leaf["value"] for leaf in leaves if leaf["path"] == "invoice.digits")
    assert digits == 5 and isinstance(digits, int)


def test_warnings_say_what_a_user_may_have_got_wrong_and_the_command_succeeds(mesh):
    folder, _ = mesh
    typo = ok(cli(folder, "flags", "set", "warn-co", "new-bta", "on"))
    assert "warn-co: new-bta is on" in typo.stdout
    (line,) = typo.stderr.strip().splitlines()
    assert line.startswith("mesh flags set: warning: no module's manifest declares feature flag 'new-bta'")
    assert "did you mean 'new-beta'?" in line
    assert ok(cli(folder, "flags", "set", "warn-co", "new-beta", "on")).stderr == ""

    disabled = ok(cli(folder, "config", "set", "billing", "warn-co", '{"currency": "GBP"}'))
    (line,) = disabled.stderr.strip().splitlines()
    assert line.startswith("mesh config set: warning: module billing is not enabled for tenant warn-co")
    assert "mesh tenant enable warn-co billing" in line
    ok(cli(folder, "tenant", "enable", "warn-co", "billing"))
    assert ok(cli(folder, "config", "set", "billing", "warn-co", '{"currency": "GBP"}')).stderr == ""

    skipped = ok(cli(folder, "tenant", "enable", "warn-co", "beta"))
    assert "warn-co: beta" in skipped.stdout
    (line,) = skipped.stderr.strip().splitlines()
    assert line.startswith("mesh tenant enable: warning: module beta is skipped in this mesh")
    assert "feature flag 'new-beta' is off" in line and "restart the mesh" in line
    assert ok(cli(folder, "tenant", "enable", "warn-co", "base")).stderr == ""


@pytest.mark.parametrize(
    ("args", "expected", "close"),
    [
        (("address", "bse"), "mesh address: no module 'bse' in this mesh", "base"),
        (("restart", "ap"), "mesh restart: no module 'ap' in this mesh", "app"),
        (("config", "get", "biling", "acme"), "mesh config get: no module 'biling' in this mesh", "billing"),
        (("tenant", "enable", "acme", "bas"), "mesh tenant enable: no module 'bas' in this mesh", "base"),
        (("logs", "bse"), "mesh logs: no log of module 'bse'", "base"),
        (("nats", "permissions", "--module", "bse"), "mesh nats permissions: no module 'bse'", "base"),
    ],
    ids=["address", "restart", "config", "tenant", "logs", "nats"],
)
def test_an_unknown_name_exits_2_with_did_you_mean(mesh, args, expected, close):
    folder, _ = mesh
    result = cli(folder, *args)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(expected), line
    assert line.endswith(f"did you mean {close!r}?"), line


def test_logs_without_a_name_prefix_every_module_and_follow_ends_cleanly_on_ctrl_c(mesh):
    folder, _ = mesh
    everything = ok(cli(folder, "logs"))
    prefixes = {line.partition(" | ")[0].strip() for line in everything.stdout.splitlines()}
    assert {"base", "app", "billing"} <= prefixes, everything.stdout[:2000]
    assert all(" | " in line for line in everything.stdout.splitlines())
    one = ok(cli(folder, "logs", "base", "-n", "1"))
    assert one.stdout.splitlines() == (folder.state / "logs" / "base.log").read_text().splitlines()[-1:]

    clean = {key: value for key, value in folder.environment().items() if key not in COMMAND_ENV}
    follower = subprocess.Popen(
        folder.mesh_command("logs", "-f", "-n", "1"),
        cwd=folder.root,
        env={**clean, "MESH_STATE_DIR": str(folder.state)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            seen.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(line.startswith("base") for line in seen), "the tail of base's log", follower)
        with open(folder.state / "logs" / "base.log", "a") as log:
            log.write("a line written while following\n")
        (folder.state / "logs" / "zeta.log").write_text("a module that started later\n")
        wait_until(
            lambda: (
                any(re.match(r"base +\| a line written while following", line) for line in seen)
                and any(re.match(r"zeta +\| a module that started later", line) for line in seen)
            ),
            "the new lines, prefixed",
            follower,
        )
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=WAIT_SECONDS) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        (folder.state / "logs" / "zeta.log").unlink(missing_ok=True)
    reader.join(timeout=WAIT_SECONDS)
    assert follower.stderr is not None and follower.stderr.read() == ""


def wait_until(condition, what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the process exited with {process.returncode} waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def command_groups() -> dict[str, list[str]]:
    """Each command that has actions, with its actions, from the parser itself."""
    groups = {}
    for name, parser in _subcommands(_parser()).items():
        actions = _subcommands(parser)
        if actions:
            groups[name] = list(actions)
    return groups


def _subcommands(parser) -> dict:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_help_lists_every_action_with_a_line_of_its_own(tmp_path):
    groups = command_groups()
    assert {"tenant", "flags", "config", "dlq", "creds", "token", "nats"} <= set(groups)
    folder = MeshDir(tmp_path)
    for group, actions in groups.items():
        shown = ok(folder.run_cli(group, "--help"))
        for action in actions:
            described = re.search(rf"^ {{4}}{re.escape(action)}(?: +|\n +)\S", shown.stdout, re.MULTILINE)
            assert described, f"`mesh {group} --help` does not describe {action}:\n{shown.stdout}"


def test_bash_completion_is_generated_from_the_parser(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    folder = MeshDir(tmp_path)
    script = tmp_path / "mesh.bash"
    script.write_text(ok(folder.run_cli("completion", "bash")).stdout)
    commands = list(_subcommands(_parser()))

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{word}'" for word in words)
        program = (
            f"source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
            'PATH="$MESH_BIN:$PATH" _mesh_complete\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        done = subprocess.run(
            [bash, "--norc", "-c", program],
            env={**folder.environment(MESH_COORDINATOR="127.0.0.1:9"), "MESH_BIN": str(Path(sys.executable).parent)},
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("mesh", "") == commands
    assert complete("mesh", "tenant", "") == ["enable", "disable", "list"]
    assert complete("mesh", "t") == [command for command in commands if command.startswith("t")] == ["tenant", "token"]
    assert complete("mesh", "graph", "--format", "") == ["text", "mermaid", "dot"]
    assert "--with-dependencies" in complete("mesh", "tenant", "enable", "--")
    assert complete("mesh", "completion", "") == ["bash", "zsh"]
    assert "completion" in commands and "status" in commands
