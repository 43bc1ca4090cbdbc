"""The graph logic as pure functions over manifests: no processes."""

from __future__ import annotations

import pytest

from mesh.control import graph
from mesh.protocol.manifest import parse_manifest


def manifest(
    name: str,
    *deps: str,
    optional: tuple[str, ...] = (),
    version: str = "1.0.0",
    constraints: dict[str, str] | None = None,
    flag: str | None = None,
):
    data = {
        "name": name,
        "version": version,
        "dependencies": [{"name": d, "version": (constraints or {}).get(d, "")} for d in deps]
        + [{"name": d, "optional": True} for d in optional],
        "run": {"entry": "module:Module"},
    }
    if flag:
        data["feature_flag"] = flag
    return parse_manifest(data, f"{name}/module.toml")


def mesh(*manifests):
    return {m.name: m for m in manifests}


DIAMOND = mesh(
    manifest("base"),
    manifest("left", "base"),
    manifest("right", "base"),
    manifest("top", "left", "right"),
    manifest("app", "top"),
    manifest("solo"),
    manifest("extras", optional=("solo", "absent")),
)


def test_order_puts_every_dependency_first():
    order = graph.initialization_order(DIAMOND)
    for name, m in DIAMOND.items():
        for dependency in m.dependencies:
            if dependency.name in DIAMOND:
                assert order.index(dependency.name) < order.index(name)
    assert order == ["base", "solo", "extras", "left", "right", "top", "app"]


def test_critical_means_required_by_someone():
    assert graph.critical_modules(DIAMOND) == {"base", "left", "right", "top"}


def test_transitive_relations_and_depth():
    required = graph.required_dependencies(DIAMOND)
    dependents = graph.dependents_of(DIAMOND)
    assert graph.transitive("app", required) == ["base", "left", "right", "top"]
    assert graph.transitive("base", dependents) == ["app", "left", "right", "top"]
    assert graph.depth("app", DIAMOND) == 3
    assert graph.depth("base", DIAMOND) == 0


def test_cycles_are_reported_with_their_path():
    cyclic = mesh(manifest("a", "b"), manifest("b", "c"), manifest("c", "a"), manifest("d", "d2"), manifest("d2", "d"))
    assert graph.find_cycles(cyclic) == [["a", "b", "c", "a"], ["d", "d2", "d"]]
    messages = [p.message for p in graph.find_problems(cyclic)]
    assert messages[0].startswith("circular dependency: a -> b -> c -> a;")


def test_missing_and_version_problems():
    problems = graph.find_problems(
        mesh(manifest("a", "ghost"), manifest("b", "c", constraints={"c": ">=2.0.0"}), manifest("c", version="1.9.0"))
    )
    assert [(p.reason, p.module) for p in problems] == [
        ("MODULE_DEPENDENCY_MISSING", "a"),
        ("VERSION_CONSTRAINT_UNMET", "b"),
    ]
    assert "'b' requires 'c' >=2.0.0, but 'c' is version 1.9.0" in problems[1].message


def test_an_absent_optional_dependency_is_no_problem():
    assert graph.find_problems(mesh(manifest("a", optional=("ghost",)))) == []


def test_feature_flags_skip_and_cascade_through_required_dependencies_only():
    modules = mesh(
        manifest("beta", flag="new-beta"),
        manifest("gamma", "beta"),
        manifest("omega", "gamma"),
        manifest("delta", optional=("beta",)),
    )
    skipped = graph.skipped_modules(modules, {"FEATURE_FLAG_NEW_BETA": "false"}, {})
    assert skipped == {
        "beta": "feature flag 'new-beta' is off (FEATURE_FLAG_NEW_BETA=false)",
        "gamma": "requires 'beta', which is skipped",
        "omega": "requires 'gamma', which is skipped",
    }
    assert (
        graph.skipped_modules(modules, {}, {"new-beta": False})["beta"]
        == "feature flag 'new-beta' is off (mesh configuration)"
    )
    assert graph.skipped_modules(modules, {"FEATURE_FLAG_NEW_BETA": "true"}, {"new-beta": False}) == {}


@pytest.mark.parametrize("value", ["false", "0", "off", "No", " FALSE "])
def test_flag_values_that_mean_off(value):
    assert graph.flag_is_off(value)


def test_plan_keeps_what_runs_and_orders_it():
    plan = graph.plan(DIAMOND, env={}, flags={})
    assert plan.valid and not plan.skipped
    assert plan.order[0] == "base"


def test_a_newcomer_is_refused_for_what_it_breaks_with_the_fix_named():
    running = mesh(manifest("base", version="1.4.0"), manifest("extras", optional=("visitor",)))
    newcomer = manifest("visitor", "base", "ghost", constraints={"base": "^2.0.0"})
    problems = graph.problems_on_joining(running, newcomer)
    assert [(p.reason, p.module) for p in problems] == [
        ("VERSION_CONSTRAINT_UNMET", "visitor"),
        ("MODULE_DEPENDENCY_MISSING", "visitor"),
    ]
    assert problems[0].message.endswith("change the constraint or the module's version")
    assert problems[1].message.endswith("add the module 'ghost' or mark the dependency optional")


def test_a_newcomer_closing_a_cycle_through_an_optional_dependency_is_refused():
    running = mesh(manifest("base", optional=("visitor",)))
    problems = graph.problems_on_joining(running, manifest("visitor", "base"))
    assert [p.reason for p in problems] == ["CIRCULAR_DEPENDENCY"]


def test_a_newcomer_answers_only_for_its_own_problems_and_may_replace_its_namesake():
    running = mesh(manifest("broken", "ghost"), manifest("base"), manifest("visitor", "base", "ghost"))
    assert graph.problems_on_joining(running, manifest("visitor", "base")) == []


def test_a_reader_that_goes_away_is_no_error(tmp_path):
    """`mesh graph | head -1`: the pipe closes before mesh has written; no traceback, exit 0."""
    import subprocess
    import sys

    from conftest import PROJECT

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mesh.cli",
            "graph",
            "--modules",
            str(PROJECT / "modules"),
            "--state-dir",
            str(tmp_path),
        ],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before mesh writes a line
    errors = process.stderr.read()
    assert process.wait(timeout=120) == 0, errors
    assert "Traceback" not in errors
