"""Control-plane parts that need no process: restart budgets, ordered runs, configuration,
registration's validation, the lifecycle's failure record."""

from __future__ import annotations

import asyncio

import pytest

from mesh.control.config import ConfigError, load_config
from mesh.control.lifecycle import ModuleLifecycle
from mesh.control.ordering import run_in_order
from mesh.control.registration import Registration
from mesh.control.registry import ModuleRecord, Registry
from mesh.control.restart import RestartBudget
from mesh.control.settings import forwarded_to_modules
from mesh.control.tasks import BackgroundTasks
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest, RestartSpec, parse_manifest
from mesh.protocol.states import State
from mesh.protocol.transport import Transport
from mesh.v1 import lifecycle_pb2, module_pb2


def test_restart_backoff_doubles_up_to_the_cap_and_the_window_caps_restarts():
    budget = RestartBudget(
        RestartSpec(max_restarts=3, window_seconds=60, backoff_initial_seconds=0.5, backoff_max_seconds=1.5)
    )
    delays = []
    for moment in (0, 1, 2):
        decision = budget.decide(1, moment)
        assert decision.restart
        delays.append(decision.delay)
        budget.record(moment)
    assert delays == [0.5, 1.0, 1.5]
    refused = budget.decide(1, 3)
    assert not refused.restart and "restarted 3 times within 60 s" in refused.reason
    assert budget.decide(1, 100).restart  # the window has slid past the old restarts


def test_restart_policies():
    assert not RestartBudget(RestartSpec(policy="never")).decide(1, 0).restart
    assert not RestartBudget(RestartSpec(policy="on-failure")).decide(0, 0).restart
    assert RestartBudget(RestartSpec(policy="on-failure")).decide(None, 0).restart
    assert RestartBudget(RestartSpec(policy="always")).decide(0, 0).restart


async def test_ordered_runs_begin_each_action_as_soon_as_its_own_dependencies_are_done():
    events: list[str] = []
    slow_done = asyncio.Event()

    async def action(name: str) -> None:
        events.append(f"begin {name}")
        if name == "slow":
            await slow_done.wait()
        if name == "fast-child":
            slow_done.set()  # runs while 'slow' (same level as 'fast') is still busy
        events.append(f"end {name}")

    result = await run_in_order(
        ["slow", "fast", "fast-child"],
        waits_for={"fast-child": ["fast"]},
        action=action,
    )
    assert sorted(result.succeeded) == ["fast", "fast-child", "slow"]
    assert events.index("begin fast-child") < events.index("end slow")


async def test_a_critical_failure_aborts_the_run_and_reports_what_did_not_run():
    async def action(name: str) -> None:
        if name == "base":
            raise RuntimeError("broken")
        await asyncio.sleep(3600 if name == "slow" else 0)

    result = await run_in_order(
        ["base", "app", "slow"],
        waits_for={"app": ["base"]},
        requires={"app": ["base"]},
        action=action,
        abort_on_failure_of={"base"},
    )
    assert result.aborted_by == "base"
    assert str(result.failed["base"]) == "broken"
    assert set(result.not_run) == {"app", "slow"}


def test_config_file_environment_and_overrides(tmp_path):
    path = tmp_path / "mesh.toml"
    path.write_text('listen = "127.0.0.1:6000"\n[flags]\nbeta = false\n[modules.greeter.config]\ngreeting = "Hi"\n')
    config = load_config(path, env={"NATS_URL": "nats://h:4222"}, overrides={"state_dir": tmp_path / "s"})
    assert config.listen == "127.0.0.1:6000"
    assert config.nats_url == "nats://h:4222"
    assert config.flags == {"beta": False}
    assert config.module_config("greeter") == {"greeting": "Hi"}
    assert config.state_dir == tmp_path / "s"
    assert load_config(None, env={}).listen == "127.0.0.1:50050"


def test_config_errors_name_file_and_field(tmp_path):
    path = tmp_path / "mesh.toml"
    path.write_text("stop_grace_seconds = -1\nlisen = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    lines = str(raised.value).splitlines()
    assert lines[0].startswith(f"{path}: field 'stop_grace_seconds':")
    assert lines[1] == f"{path}: field 'lisen': Extra inputs are not permitted"


def test_layers_merge_objects_key_by_key():
    from mesh.protocol.layers import deep_merge

    base = {"currency": "USD", "invoice": {"prefix": "INV", "digits": 6}}
    merged = deep_merge(base, {"invoice": {"prefix": "ACME-"}, "tax_rate": 0.2})
    assert merged == {"currency": "USD", "invoice": {"prefix": "ACME-", "digits": 6}, "tax_rate": 0.2}
    assert base["invoice"]["prefix"] == "INV"


def _registration() -> tuple[Registry, Registration]:
    """A registry with 'base' 1.4.0 running and 'beta' skipped, and its registration desk."""
    registry = Registry()
    for name, state in (("base", State.RUNNING), ("beta", State.SKIPPED)):
        record = ModuleRecord(manifest=_manifest(name, version="1.4.0"), origin=module_pb2.MODULE_ORIGIN_LOCAL)
        registry.add(record)
        registry.update(record, state)

    def no_settings(record: ModuleRecord, extra: object) -> lifecycle_pb2.ModuleSettings:
        raise AssertionError("a refused module is never initialized")

    lifecycle = ModuleLifecycle(registry, no_settings, Transport(None), admit=_no_admission, stop_grace_seconds=1)
    return registry, Registration(registry, lifecycle, BackgroundTasks(), ready_timeout_seconds=1)


async def _no_admission(manifest: Manifest, consumers: object) -> None:
    raise AssertionError("no module is brought up here")


def _manifest(name: str, *deps: str, version: str = "1.0.0", constraint: str = "") -> Manifest:
    data = {
        "name": name,
        "version": version,
        "dependencies": [{"name": d, "version": constraint} for d in deps],
        "run": {"entry": "module:Module"},
    }
    return parse_manifest(data, f"{name}/module.toml")


@pytest.mark.parametrize(
    ("newcomer", "reason", "fix"),
    [
        (_manifest("visitor", "base", constraint="^2.0.0"), "VERSION_CONSTRAINT_UNMET", "change the constraint"),
        (_manifest("visitor", "beta"), "MODULE_DEPENDENCY_MISSING", "mark the dependency optional"),
        (_manifest("base"), "MODULE_ALREADY_REGISTERED", "registered modules need a name of their own"),
    ],
)
async def test_registration_refuses_what_the_graph_validation_refuses_and_names_the_fix(newcomer, reason, fix):
    registry, registration = _registration()
    with pytest.raises(MeshError) as refused:
        await registration.register("127.0.0.1:1", newcomer, newcomer.to_proto(), "instance-1")
    assert refused.value.reason == reason
    assert fix in refused.value.message
    assert registry.get("visitor") is None


def test_only_registered_modules_deregister():
    _, registration = _registration()
    with pytest.raises(MeshError) as refused:
        registration.deregister("base", "", force=False)
    assert refused.value.reason == "MODULE_NOT_FOUND"
    assert "only registered modules deregister" in refused.value.message


def test_a_failure_is_recorded_with_its_phase_and_told_to_listeners():
    registry, _ = _registration()
    changes: list[tuple[str, State, State]] = []
    registry.listen(lambda record, previous: changes.append((record.name, previous, record.state)))
    lifecycle = ModuleLifecycle(
        registry,
        lambda record, extra: lifecycle_pb2.ModuleSettings(),
        Transport(None),
        admit=_no_admission,
        stop_grace_seconds=1,
    )
    lifecycle.fail(registry.require("base"), "initialize", "HOOK_FAILED", "on_initialize raised")
    base = registry.require("base")
    assert changes == [("base", State.RUNNING, State.FAILED)]
    assert base.error is not None
    assert (base.error.phase, base.error.reason) == ("initialize", "HOOK_FAILED")
    assert base.state_reason == "on_initialize raised"


@pytest.mark.parametrize(
    ("variable", "forwarded"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", True),
        ("OTEL_SERVICE_NAME", True),
        ("OTEL_EXPORTER_OTLP_HEADERS", False),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", False),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", False),
        ("PATH", False),
    ],
)
def test_modules_get_the_telemetry_settings_but_never_the_exporter_headers(variable: str, forwarded: bool) -> None:
    assert forwarded_to_modules(variable) is forwarded
