"""Control-plane parts that need no process: restart budgets, ordered runs, configuration."""

from __future__ import annotations

import asyncio

import pytest

from mesh.control.config import ConfigError, load_config
from mesh.control.ordering import run_in_order
from mesh.control.restart import RestartBudget
from sdk import RestartSpec


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
