"""`mesh new`: the scaffolded module passes its own test and comes up in a mesh unchanged; in a
copy of the project, `mesh new parcelcheck` (a name no example module has, so that the tests
hold after a user's own `mesh new shipping` too) keeps `make test`'s affected tests green (the module's
own, the compose shape, the contracts), and so does the edit its comments describe (`orders` as
a dependency, an `order.created` handler fed by `harness.publish`). Every line it writes fits
in 100 columns and passes ruff, before and after that edit; a bad name gets one line, exit 2."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, tool
from mesh.cli.compose_service import ComposeShapeError, ServiceExists, service_block, with_service
from meshkit import MeshDir
from sdk import State

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 600  # an upper bound for a test run in the copy (the compose shape starts a cluster)
LONGEST_NAME = "a" * 30 + "-" + "b" * 26  # 57 characters: `module:<name>` fills a certificate's 64
MODULE_COMPOSE = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())


def test_a_new_module_comes_up_in_a_mesh_unchanged(tmp_path):
    mesh = MeshDir(tmp_path)
    created = mesh.run_cli("new", "demo-shop", "--modules", str(mesh.modules), "--description", 'Sells "demos".')
    assert created.returncode == 0, created.stderr
    assert "no " + str(tmp_path / "docker-compose.yml") in created.stdout  # no compose file: said, not guessed
    folder = mesh.modules / "demo_shop"
    for relative in (
        "module.toml",
        "module.py",
        "README.md",
        "v1/demo_shop.proto",
        "v1/demo_shop_pb2.py",
        "v1/demo_shop_pb2_grpc.py",
        "tests/__init__.py",
        "tests/test_demo_shop.py",
    ):
        assert (folder / relative).exists(), relative

    again = mesh.run_cli("new", "demo-shop", "--modules", str(mesh.modules))
    assert again.returncode == 2 and "exists already" in again.stderr

    with mesh.up() as running:
        modules = running.wait_until_up()
        assert State(modules["demo-shop"].state) is State.RUNNING
        assert modules["demo-shop"].description == 'Sells "demos".'


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["Demo_Shop"], "'Demo_Shop' is not a kebab-case module name"),
        ([LONGEST_NAME + "c"], "is too long: at most 57 characters, as its certificate names it"),
        (["class"], "'class' is a Python keyword"),
        (["json"], "would shadow Python's standard module 'json'"),
        (["sdk"], "would shadow the package 'sdk' at "),
        (["parcelcheck", "--description", "two\nlines"], "holds a line break or control character; give one line"),
    ],
)
def test_a_bad_name_or_description_gets_one_line_and_exit_2(tmp_path, arguments, says):
    mesh = MeshDir(tmp_path)
    refused = mesh.run_cli("new", *arguments, "--modules", str(mesh.modules))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("mesh new: ") and says in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert list(mesh.modules.iterdir()) == []


@pytest.mark.parametrize("name", ["parcelcheck", "a", "zulu", LONGEST_NAME])
def test_what_it_writes_fits_100_columns_and_passes_ruff_before_and_after_the_edit(tmp_path, name):
    """In a miniature of the project (its ruff settings, its compose file, the SDK and the orders
    module the edit imports), since ruff sorts imports by what is first-party there."""
    for entry in ("pyproject.toml", "docker-compose.yml"):
        shutil.copy(PROJECT / entry, tmp_path / entry)
    for package in ("mesh", "sdk"):
        (tmp_path / package).symlink_to(PROJECT / package, target_is_directory=True)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "orders").symlink_to(PROJECT / "modules" / "orders", target_is_directory=True)
    created = run(["-m", "mesh.cli", "new", name], tmp_path)
    assert created.returncode == 0, created.stderr
    folder = tmp_path / "modules" / name.replace("-", "_")

    written = [path for path in folder.rglob("*") if path.is_file() and not path.name.endswith((".pyi", "_pb2.py"))]
    written = [path for path in written if not path.name.endswith("_pb2_grpc.py")]  # protoc's, not the scaffold's
    diff = difflib.unified_diff(
        (PROJECT / "docker-compose.yml").read_text().splitlines(),
        (tmp_path / "docker-compose.yml").read_text().splitlines(),
        n=0,
        lineterm="",
    )
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    wide = [f"{path.name}: {line}" for path in written for line in path.read_text().splitlines() if len(line) > 100]
    assert wide + [line for line in added if len(line) > 100] == []
    assert len(added) == len(service_block(name).splitlines()) + 2  # the service, and its secret (2 lines)
    assert_ruff_passes(folder, tmp_path)

    apply_the_edit_the_comments_describe(folder)
    assert_ruff_passes(folder, tmp_path)


def assert_ruff_passes(folder: Path, project: Path) -> None:
    for command in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        linted = subprocess.run([tool("ruff"), *command, str(folder)], cwd=project, capture_output=True, text=True)
        assert linted.returncode == 0, linted.stdout + linted.stderr


def test_mesh_new_keeps_the_project_green_and_so_does_the_edit_its_comments_describe(tmp_path):
    copy = copy_of_the_project(tmp_path / "project")
    created = run(["-m", "mesh.cli", "new", "parcelcheck"], copy)
    assert created.returncode == 0, created.stderr
    assert "added the service 'parcelcheck' and its secret 'parcelcheck-tls'" in created.stdout

    affected = ["modules/parcelcheck", "tests/test_compose.py", "tests/test_contracts.py"]
    tested = run(["-m", "pytest", "-q", "-rp", "-p", "no:cacheprovider", *affected], copy)
    assert tested.returncode == 0, tested.stdout[-5000:] + tested.stderr[-2000:]
    assert "skipped" not in tested.stdout
    for ran in ("test_parcelcheck.py::test_pings", "test_compose.py::test_the_compose_shape_runs_as_plain_processes"):
        assert ran in tested.stdout, tested.stdout

    apply_the_edit_the_comments_describe(copy / "modules" / "parcelcheck")
    retested = run(["-m", "pytest", "-q", "-rp", "-p", "no:cacheprovider", "modules/parcelcheck"], copy)
    assert retested.returncode == 0, retested.stdout[-5000:] + retested.stderr[-2000:]
    assert "test_parcelcheck.py::test_handles_a_new_order" in retested.stdout and "2 passed" in retested.stdout

    # A module whose service is missing: the compose test names it and what to add.
    shutil.copy(PROJECT / "docker-compose.yml", copy / "docker-compose.yml")
    lacking = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_compose.py", "-k", "every_module"], copy)
    assert lacking.returncode == 1
    assert "docker-compose.yml has no service for module(s) parcelcheck; add, under services:" in lacking.stdout
    assert "MESH_MODULE: parcelcheck" in lacking.stdout and "parcelcheck-tls:" in lacking.stdout


def copy_of_the_project(copy: Path) -> Path:
    """The project as a user's clone holds it (no venv, no state, no caches), with the Node.js
    module's installed dependencies linked, not copied."""
    shutil.copytree(
        PROJECT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".mesh", "secrets", "node_modules", "__pycache__", "*.egg-info", ".*_cache"
        ),
    )
    node_modules = PROJECT / "modules" / "audit" / "node_modules"
    if node_modules.exists():
        (copy / "modules" / "audit" / "node_modules").symlink_to(node_modules, target_is_directory=True)
    return copy


def run(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The project's Python in `cwd`, as `make test` or a user's `mesh` would run it there."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=WAIT_SECONDS
    )


def apply_the_edit_the_comments_describe(folder: Path) -> None:
    """What an author does after reading the scaffold's comments: `orders` as a dependency, the
    order.created handler (and its payload's import), a stand-in for orders in the tests and the
    test that feeds the handler an event. Each block must be there exactly as written here."""
    name = re.search(r'^name = "(.+)"$', (folder / "module.toml").read_text(), re.MULTILINE)
    assert name is not None
    uncomment(folder / "module.toml", '# [[dependencies]]\n# name = "orders"\n# version = "^1.0"\n')
    uncomment(
        folder / "module.toml",
        f'# [events]\n# publishes = ["{name.group(1)}.updated"]\n# subscribes = ["order.created"]\n',
    )
    uncomment(folder / "module.py", "# from orders.events import OrderCreated\n")
    uncomment(
        folder / "module.py",
        '    # @sdk.on("order.created")\n'
        "    # async def on_order_created(self, order: OrderCreated) -> None:\n"
        '    #     self.ctx.logger.info("order %s: %d x %s", order.order_id, order.quantity, order.sku)\n',
    )
    (test,) = (folder / "tests").glob("test_*.py")
    stand_ins = "STAND_INS: dict[str, list[object]] = {}\n"
    assert '# STAND_INS = {"orders": []}\n' in test.read_text()
    test.write_text(test.read_text().replace(stand_ins, 'STAND_INS = {"orders": []}\n'))
    text = test.read_text()
    example = text[text.index("# async def test_handles_a_new_order(module_harness):") :]
    assert "harness.publish(" in example
    uncomment(test, example)


def uncomment(path: Path, block: str) -> None:
    text = path.read_text()
    assert block in text, f"{path.name} lacks the commented block:\n{block}"
    path.write_text(text.replace(block, re.sub(r"^(\s*)# ?", r"\1", block, flags=re.MULTILINE)))


def test_a_service_is_added_to_the_compose_file_as_text_in_the_examples_shape():
    text = (PROJECT / "docker-compose.yml").read_text()
    added = with_service(text, "parcelcheck")
    assert added.startswith(text.split("\nservices:\n")[0])  # the header and anchors as they were
    compose = yaml.safe_load(added)
    greeter, parcelcheck = compose["services"]["greeter"], compose["services"]["parcelcheck"]
    assert parcelcheck["environment"]["MESH_MODULE"] == "parcelcheck"
    assert {key: value for key, value in parcelcheck.items() if key not in ("environment", "secrets")} == {
        key: value for key, value in greeter.items() if key not in ("environment", "secrets")
    }
    assert parcelcheck["secrets"] == [{"source": "parcelcheck-tls", "target": "/run/secrets/mesh-tls"}]
    assert compose["secrets"]["parcelcheck-tls"] == {"file": "./secrets/parcelcheck"}
    assert list(compose) == list(MODULE_COMPOSE)  # nothing moved, volumes still last

    with pytest.raises(ServiceExists, match="it has 'parcelcheck' already"):
        with_service(added, "parcelcheck")
    quoted = yaml.safe_load(with_service(text, "on"))  # YAML 1.1 reads a bare `on` as true
    assert quoted["services"]["on"]["environment"]["MESH_MODULE"] == "on"
    with pytest.raises(ComposeShapeError, match="no &module or &module-env anchor"):
        with_service("services:\n  web:\n    image: nginx\n", "parcelcheck")


def test_a_compose_file_of_another_shape_is_left_alone_with_what_to_add(tmp_path):
    mesh = MeshDir(tmp_path)
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  web:\n    image: nginx\n")
    created = mesh.run_cli("new", "parcelcheck", "--modules", str(mesh.modules))
    assert created.returncode == 0, created.stderr
    assert compose.read_text() == "services:\n  web:\n    image: nginx\n"
    assert f"{compose} was left as it is: it has no &module or &module-env anchor" in created.stdout
    assert service_block("parcelcheck") in created.stdout
