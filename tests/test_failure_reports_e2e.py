"""What `mesh up` says when a module fails: this run's error, once, with the file:line to fix
and where the whole log is; and what the graph validation says about a typo'd dependency."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.control import graph
from mesh.protocol.manifest import parse_manifest
from meshkit import MeshDir
from sdk import State

BROKEN = "import sdk\nfrom {package} import thing\n\n\nclass Module(sdk.Module):\n    pass\n"
FAILING = """import sdk


class Module(sdk.Module):
    async def initialize(self, ctx):
        raise RuntimeError("{message}")
        self.db = open(ctx.state_dir / "db", "w")

    async def stop(self):
        self.db.close()
"""
RUNS = [
    # Names of different lengths: Python's bytecode cache tells sources apart by size and mtime.
    ("no_such_package_one", "the database is not there"),
    ("no_such_package_the_second", "the database went away in the second run"),
]


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the line of `path` that holds `text`."""
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_each_run_reports_only_its_own_failures_once_with_file_line_and_the_logs_pointer(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    broken = mesh.module("broken")
    failing = mesh.module("failing")
    for run, (package, message) in enumerate(RUNS):
        (broken / "module.py").write_text(BROKEN.format(package=package))
        (failing / "module.py").write_text(FAILING.format(message=message))
        with mesh.up() as running:
            modules = running.wait_until_up(failures_expected=True)
            assert State(modules["base"].state) is State.RUNNING
            assert State(modules["broken"].state) is State.FAILED
            assert State(modules["failing"].state) is State.FAILED
            running.wait_for(lambda: "Ctrl-C" in running.text, "the end of the start-up report")
        text = running.text
        earlier = [RUNS[other] for other in range(run)]
        for old_package, old_message in earlier:
            assert old_package not in text and old_message not in text, text

        import_line = f"{broken / 'module.py'}:{line_of(broken / 'module.py', package)}"
        reports = [line for line in text.splitlines() if line.startswith("mesh up: module broken exited")]
        assert len(reports) == 1, text
        assert f"No module named '{package}' (at {import_line}); see `mesh logs broken`" in reports[0]

        raise_line = f"{failing / 'module.py'}:{line_of(failing / 'module.py', 'raise RuntimeError')}"
        headline = "mesh up: the initialize hook of module failing raised RuntimeError"
        reports = [line for line in text.splitlines() if line.startswith(headline)]
        assert reports == [f"{headline}: {message} (at {raise_line})"], text
        assert text.count("Traceback (most recent call last)") == 1, text
        assert text.count(f'raise RuntimeError("{message}")') == 1, text
        assert text.count("see `mesh logs failing`") == 1, text

        log = (mesh.state / "logs" / "failing.log").read_text()
        assert "AttributeError" not in log and "stop hook raised" not in log, log


def manifest(name: str, *dependencies: str):
    data = {
        "name": name,
        "version": "1.0.0",
        "dependencies": [{"name": dependency} for dependency in dependencies],
        "run": {"entry": "module:Module"},
    }
    return parse_manifest(data, f"{name}/module.toml")


@pytest.mark.parametrize(
    ("dependency", "hint"),
    [
        ("inventroy", "did you mean 'inventory'? Otherwise add the module 'inventroy'"),
        ("user", "did you mean 'users'? Otherwise add the module 'user'"),
        ("ghost", "which is not in the mesh; add the module 'ghost'"),
    ],
)
def test_a_missing_dependency_suggests_the_module_it_was_probably_meant_to_be(dependency, hint):
    manifests = {m.name: m for m in (manifest("inventory"), manifest("users"), manifest("orders", dependency))}
    (problem,) = graph.find_problems(manifests)
    assert problem.reason == "MODULE_DEPENDENCY_MISSING"
    assert hint in problem.message
    assert problem.message.endswith(f"add the module '{dependency}' or mark the dependency optional")


def test_a_module_is_never_suggested_as_its_own_dependency():
    (problem,) = graph.find_problems({"orders": manifest("orders", "order")})
    assert "did you mean" not in problem.message
