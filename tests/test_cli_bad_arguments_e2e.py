"""No `mesh` command prints a traceback, whatever it is given: every subcommand and action, read
from the argparse parser itself (a command added later without cases here fails the test), is
run as a real process with bad arguments — unknown names, bad JSON, unwritable paths, a
coordinator that is not there, a mesh that has stopped — and must exit with the documented
code and one clear line on stderr (argparse's usage and error line for what argparse refuses).

Exit codes (mesh/cli/__init__.py, docs/cli.md): 1 the operation failed, 2 bad usage or input,
3 the coordinator (or NATS) does not answer."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh.cli import _parser
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh

pytestmark = pytest.mark.e2e

FAILED, USAGE, UNREACHABLE = 1, 2, 3
COMMAND_ENV = ("MESH_COORDINATOR", "MESH_CREDS", "MESH_STATE_DIR", "NATS_URL")
PARALLEL_COMMANDS = 3
"""How many `mesh` processes run at once: each spends most of its time starting Python."""

RUNNING = "running"
"""The state folder of the running mesh of the fixture."""
STOPPED = "stopped"
"""The state folder of a mesh that is gone: its coordinator.json names ports nothing listens on."""
NOWHERE = "nowhere"
"""An empty state folder, and MESH_COORDINATOR / NATS_URL on ports nothing listens on."""


@dataclass(frozen=True)
class Case:
    """One bad invocation of a command and what it must end with."""

    where: str
    args: tuple[str, ...]
    code: int
    says: str = ""
    """A part of the error line, when the case is about what it says (a "did you mean")."""


def case(where: str, *args: str, code: int, says: str = "") -> Case:
    return Case(where, args, code, says)


# Placeholders filled in per run: {modules} the mesh's modules folder, {broken} a folder with an
# invalid manifest, {tmp} a writable scratch folder.
CASES: dict[str, list[Case]] = {
    "up": [
        case(NOWHERE, "--modules", "/nonexistent/modules", code=USAGE),
        case(NOWHERE, "--modules", "{broken}", code=USAGE),
        case(NOWHERE, "--config", "/nonexistent/mesh.toml", code=USAGE),
        case(NOWHERE, "--modules", "{modules}", "--gateway-listen", "nonsense", code=USAGE),
        case(NOWHERE, "--modules", "{modules}", "--call-timeout", "-1", code=USAGE),
    ],
    "down": [case(NOWHERE, code=UNREACHABLE), case(STOPPED, code=UNREACHABLE)],
    "status": [
        case(NOWHERE, code=UNREACHABLE),
        case(STOPPED, "--json", code=UNREACHABLE),
        case(RUNNING, "--creds", "/nonexistent/creds", code=USAGE),
        case(RUNNING, "--json", "--names", code=USAGE),
    ],
    "address": [
        case(RUNNING, "bse", code=USAGE, says="did you mean 'base'?"),
        case(RUNNING, "x" * 10_000, code=USAGE),
        case(STOPPED, "base", code=UNREACHABLE),
    ],
    "health": [case(STOPPED, code=UNREACHABLE), case(RUNNING, "--coordinator", "not an address", code=UNREACHABLE)],
    "graph": [
        case(NOWHERE, "--modules", "/nonexistent/modules", code=USAGE),
        case(NOWHERE, "--modules", "{broken}", code=USAGE),
        case(NOWHERE, "--modules", "{modules}", "--format", "svg", code=USAGE),
    ],
    "call": [
        case(RUNNING, "bse", "SayHello", code=USAGE, says="did you mean 'base'?"),
        case(RUNNING, "base", "NoSuchMethod", code=USAGE),
        case(RUNNING, "base", "SayHello", "-d", "{bad", code=USAGE),
        case(RUNNING, "base", "SayHello", "-d", "@/nonexistent/request.json", code=USAGE),
        case(RUNNING, "base", "SayHello", "-H", "no colon", code=USAGE),
        case(RUNNING, "base", "SayHello", "--timeout", "0", code=USAGE),
        case(STOPPED, "base", "SayHello", code=UNREACHABLE),
    ],
    "reload": [
        case(RUNNING, "bse", code=USAGE, says="did you mean 'base'?"),
        case(RUNNING, "app", "--config", "{bad", code=USAGE),
        case(RUNNING, "app", "--config", "[1, 2]", code=USAGE),
        case(RUNNING, "app", "--config", '{"colour": 1}', code=USAGE),
        case(NOWHERE, "app", code=UNREACHABLE),
    ],
    "restart": [case(RUNNING, "ap", code=USAGE, says="did you mean 'app'?"), case(STOPPED, "base", code=UNREACHABLE)],
    "events": [
        case(NOWHERE, "--modules", "/nonexistent/modules", code=USAGE),
        case(NOWHERE, "--modules", "{broken}", code=USAGE),
        case(NOWHERE, "--modules", "{modules}", "--asyncapi", "/nonexistent/x.json", code=USAGE),
        case(NOWHERE, "--modules", "{modules}", "--asyncapi", "/proc/x.json", code=USAGE),
    ],
    "dlq list": [case(STOPPED, code=UNREACHABLE), case(NOWHERE, "--nats-url", "nats://127.0.0.1:1", code=UNREACHABLE)],
    "dlq show": [
        case(RUNNING, "999999", code=USAGE),
        case(RUNNING, "not-a-number", code=USAGE),
        case(STOPPED, "1", code=UNREACHABLE),
    ],
    "dlq replay": [
        case(RUNNING, "999999", code=USAGE),
        case(RUNNING, code=USAGE),
        case(RUNNING, "--module", "base", code=USAGE),
        case(RUNNING, "1", "--all", code=USAGE),
    ],
    "tenant enable": [
        case(RUNNING, "acme", "bse", code=USAGE, says="did you mean 'base'?"),
        case(RUNNING, "bad.tenant", "base", code=USAGE),
        case(RUNNING, "acme", "base", "--actor", "\x07bell", code=USAGE),
        case(RUNNING, "dependent-co", "app", code=FAILED),
        case(NOWHERE, "acme", "base", code=UNREACHABLE),
    ],
    "tenant disable": [
        case(RUNNING, "acme", "ap", code=USAGE, says="did you mean 'app'?"),
        case(STOPPED, "acme", "base", code=UNREACHABLE),
    ],
    "tenant list": [case(RUNNING, "bad.tenant", code=USAGE), case(STOPPED, "acme", code=UNREACHABLE)],
    "flags set": [
        case(RUNNING, "bad.tenant", "beta", "on", code=USAGE),
        case(RUNNING, "acme", "bad flag!", "on", code=USAGE),
        case(RUNNING, "acme", "beta", "maybe", code=USAGE),
        case(NOWHERE, "acme", "beta", "on", code=UNREACHABLE),
    ],
    "flags get": [case(RUNNING, "bad.tenant", code=USAGE), case(STOPPED, "acme", code=UNREACHABLE)],
    "config set": [
        case(RUNNING, "billing", "acme", "not json", code=USAGE),
        case(RUNNING, "billing", "acme", "[1]", code=USAGE),
        case(RUNNING, "billing", "acme", '{"tax_rate": 2}', code=USAGE),
        case(RUNNING, "biling", "acme", "{}", code=USAGE, says="did you mean 'billing'?"),
        case(NOWHERE, "billing", "acme", "{}", code=UNREACHABLE),
    ],
    "config get": [
        case(RUNNING, "biling", "acme", code=USAGE, says="did you mean 'billing'?"),
        case(RUNNING, "billing", "bad.tenant", code=USAGE),
        case(STOPPED, "billing", "acme", code=UNREACHABLE),
    ],
    "config effective": [
        case(RUNNING, "billing", "acme", "--company", "bad.company", code=USAGE),
        case(STOPPED, "billing", "acme", code=UNREACHABLE),
    ],
    "creds issue": [
        case(RUNNING, "alice", "--role", "viewer", "--out", "/proc/alice", code=USAGE),
        case(RUNNING, "alice", "--out", "{tmp}/alice", code=USAGE),
        case(RUNNING, "--module", "Bad_Name", "--out", "{tmp}/bad", code=USAGE),
        case(RUNNING, "a" * 100, "--role", "viewer", "--out", "{tmp}/long", code=USAGE),
        case(RUNNING, "alice", "--role", "viewer", "--out", "{tmp}/x", "--lifetime", "-1", code=USAGE),
        case(NOWHERE, "alice", "--role", "viewer", "--out", "{tmp}/nowhere", code=USAGE),
    ],
    "creds grpcurl-flags": [case(NOWHERE, code=USAGE), case(RUNNING, "--role", "king", code=USAGE)],
    "creds ca": [case(NOWHERE, "--state-dir", "/proc/mesh", code=USAGE)],
    "token issue": [
        case(NOWHERE, "--tenant", "acme", code=USAGE),
        case(RUNNING, "--tenant", "bad.tenant", code=USAGE),
        case(RUNNING, "--tenant", "acme", "--ttl", "nan", code=USAGE),
        case(RUNNING, code=USAGE),
    ],
    "nats permissions": [
        case(RUNNING, "--module", "bse", code=USAGE, says="did you mean 'base'?"),
        case(NOWHERE, "--modules", "/nonexistent/modules", code=USAGE),
    ],
    "nats users": [
        case(NOWHERE, "--modules", "{modules}", "--out", "/proc/nats", code=USAGE),
        case(NOWHERE, "--modules", "{modules}", "--out", "{tmp}/nats", "--route", "no-port", code=USAGE),
    ],
    "new": [
        case(NOWHERE, "Bad_Name", "--modules", "{tmp}", code=USAGE),
        case(NOWHERE, "shipping", "--modules", "/nonexistent/modules", code=USAGE),
        case(NOWHERE, "shipping", "--modules", "/proc", code=USAGE),
    ],
    "logs": [
        case(RUNNING, "bse", code=USAGE, says="did you mean 'base'?"),
        case(RUNNING, "base", "-n", "-5", code=USAGE),
        case(NOWHERE, code=USAGE),
    ],
    "gateway": [
        case(NOWHERE, code=USAGE),
        case(RUNNING, "--listen", "nonsense", code=USAGE),
        case(RUNNING, "--call-timeout", "0", code=USAGE),
        case(RUNNING, "--token-keys", "/nonexistent/token-keys.pem", code=USAGE),
        case(RUNNING, "--rate-limit", "nan", code=USAGE),
        case(RUNNING, "--rate-burst", "0", code=USAGE),
        case(RUNNING, "--nats-url", "http://127.0.0.1:4222", code=USAGE, says="is no NATS URL"),
    ],
    "registry validate": [
        case(NOWHERE, "/nonexistent/module", code=USAGE, says="no such folder"),
        case(NOWHERE, "{broken}/wrong", code=USAGE),
        case(NOWHERE, "{tmp}", code=USAGE, says="module.toml"),
        case(NOWHERE, "{modules}/base", "--max-bytes", "0", code=USAGE),
        case(NOWHERE, "{modules}/base", "--max-bytes", "10", code=USAGE, says="over the limit of 10"),
    ],
    "reset": [case(RUNNING, code=FAILED)],
    "completion": [case(NOWHERE, "fish", code=USAGE), case(NOWHERE, code=USAGE)],
}
LAST = {"reset"}
"""Run after every other case: were it to succeed, it would empty the running mesh's state."""


def leaf_commands() -> list[str]:
    """Every command and action the parser has, e.g. "status", "tenant enable"."""
    found: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not children:
            found.append(path)
        for action in children:
            for name, sub in action.choices.items():
                walk(sub, f"{path} {name}".strip())

    walk(_parser(), "")
    return found


def test_every_command_and_action_has_bad_argument_cases():
    commands = leaf_commands()
    missing = sorted(set(commands) - set(CASES))
    assert not missing, f"add bad-argument cases to CASES in {__file__} for: {', '.join(missing)}"
    stale = sorted(set(CASES) - set(commands))
    assert not stale, f"CASES names commands the parser does not have: {', '.join(stale)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Places:
    """Where the cases run: the mesh's folder, and a state folder for each kind of case."""

    mesh: MeshDir
    states: dict[str, Path]
    nowhere_env: dict[str, str]
    broken: Path
    scratch: Path

    def environment(self, where: str) -> dict[str, str]:
        clean = {key: value for key, value in self.mesh.environment().items() if key not in COMMAND_ENV}
        extra = self.nowhere_env if where == NOWHERE else {}
        return {**clean, "MESH_STATE_DIR": str(self.states[where]), "COLUMNS": "120", **extra}

    def args(self, given: tuple[str, ...]) -> list[str]:
        values = {"{modules}": str(self.mesh.modules), "{broken}": str(self.broken), "{tmp}": str(self.scratch)}
        filled = []
        for arg in given:
            for placeholder, value in values.items():
                arg = arg.replace(placeholder, value)
            filled.append(arg)
        return filled


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Places]:
    root = tmp_path_factory.mktemp("bad-arguments")
    mesh = MeshDir(root / "mesh")
    mesh.module("base")
    mesh.module("app", depends=["base"])
    mesh.module("billing", cls="Billing", subscribes=["greeting.sent"])
    broken = MeshDir(root / "broken")
    manifest = broken.module("wrong") / "module.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0.0"', 'version = "one"'))
    with mesh.up() as running:
        running.wait_until_up()
        yield Places(
            mesh=mesh,
            states={RUNNING: mesh.state, STOPPED: stopped_state(running, root / "stopped"), NOWHERE: root / "empty"},
            nowhere_env={
                "MESH_COORDINATOR": f"127.0.0.1:{free_port()}",
                "NATS_URL": f"nats://127.0.0.1:{free_port()}",
            },
            broken=broken.modules,
            scratch=root / "scratch",
        )


def stopped_state(running: RunningMesh, folder: Path) -> Path:
    """A copy of the running mesh's credentials with a coordinator.json whose coordinator and
    NATS are gone, as a mesh that was killed leaves its state folder."""
    shutil.copytree(running.mesh.state / "pki", folder / "pki")
    shutil.copytree(running.mesh.state / "nats-access", folder / "nats-access")
    info = json.loads((running.mesh.state / "coordinator.json").read_text())
    info.update(
        address=f"127.0.0.1:{free_port()}",
        nats_url=f"nats://127.0.0.1:{free_port()}",
        credentials=str(folder / "pki" / Path(info["credentials"]).relative_to(running.mesh.state / "pki")),
    )
    (folder / "coordinator.json").write_text(json.dumps(info))
    return folder


def run_case(places: Places, command: str, bad: Case) -> str | None:
    """Run one case; what is wrong with how it ended, or None."""
    args = [*command.split(), *places.args(bad.args)]
    try:
        result = subprocess.run(
            places.mesh.mesh_command(*args),
            cwd=places.mesh.root,
            env=places.environment(bad.where),
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )
    except subprocess.TimeoutExpired as hung:
        return f"mesh {' '.join(args)[:200]} ({bad.where}) did not end in {WAIT_SECONDS} s: {hung.stderr!r:.1500}"
    shown = f"mesh {' '.join(args)[:200]} ({bad.where}) exited {result.returncode}:\n{result.stderr[-1500:]}"
    if "Traceback" in result.stdout + result.stderr:
        return f"a traceback: {shown}"
    if "a bug in mesh" in result.stderr:
        return f"an unexpected error: {shown}"
    if result.returncode != bad.code:
        return f"expected exit {bad.code}: {shown}"
    lines = result.stderr.strip().splitlines()
    if lines and lines[0].startswith("usage: "):
        if not re.match(r"mesh( [\w-]+)*: error: ", lines[-1]):
            return f"argparse's last line is not its error: {shown}"
    elif len(lines) != 1 or not lines[0].startswith(f"mesh {command}: "):
        return f"not one line 'mesh {command}: …' on stderr: {shown}"
    if bad.says and bad.says not in result.stderr:
        return f"expected {bad.says!r} in the error: {shown}"
    return None


def test_no_command_prints_a_traceback_for_bad_arguments(places):
    places.scratch.mkdir(exist_ok=True)
    places.states[NOWHERE].mkdir(exist_ok=True)
    first = [(command, bad) for command, cases in CASES.items() if command not in LAST for bad in cases]
    with ThreadPoolExecutor(max_workers=PARALLEL_COMMANDS) as pool:
        problems = list(pool.map(lambda item: run_case(places, *item), first))
    problems += [run_case(places, command, bad) for command in LAST for bad in CASES[command]]
    found = [problem for problem in problems if problem]
    assert not found, f"{len(found)} of {len(problems)} cases:\n\n" + "\n\n".join(found)


def test_an_unknown_option_is_refused_by_argparse_for_every_command(places):
    places.states[NOWHERE].mkdir(exist_ok=True)
    commands = leaf_commands()
    unknown = Case(NOWHERE, ("--no-such-option",), USAGE)
    with ThreadPoolExecutor(max_workers=PARALLEL_COMMANDS) as pool:
        problems = list(pool.map(lambda command: run_case(places, command, unknown), commands))
    found = [problem for problem in problems if problem]
    assert not found, f"{len(found)} of {len(problems)} commands:\n\n" + "\n\n".join(found)
