"""Drain, with real module processes and real gRPC: a Stop (the Lifecycle call, or a signal)
and a Reload that re-initializes let the calls in flight finish and refuse new ones with
UNAVAILABLE while health says NOT_SERVING; a Reload that only moves a dependency re-runs no
hook and switches the stubs already handed out. (Ctrl-C on `mesh up`: tests/test_interrupt_e2e.py.)"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import PROJECT
from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from processes import WAIT_SECONDS, ModuleProcess, settings
from sdk import State
from sdk.testing import eventually

pytestmark = pytest.mark.e2e

RELAY = PROJECT / "tests" / "fixtures" / "modules" / "relay"
GREETER = PROJECT / "modules" / "greeter"
UNUSED_ADDRESS = "127.0.0.1:9"


async def exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


class Calls:
    """The stubs a test uses on one module process, as the coordinator of its CA."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.greeter = greeter_pb2_grpc.GreeterStub(channel)
        self.lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    async def say(self, name: str) -> greeter_pb2.SayHelloResponse:
        reply: greeter_pb2.SayHelloResponse = await self.greeter.SayHello(
            greeter_pb2.SayHelloRequest(name=name), timeout=WAIT_SECONDS
        )
        return reply

    async def state(self) -> State:
        reply = await self.lifecycle.Describe(lifecycle_pb2.DescribeRequest(), timeout=WAIT_SECONDS)
        return State(reply.status.state)

    async def serving(self) -> int:
        reply = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=WAIT_SECONDS)
        return reply.status

    async def refused(self) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as refusal:
            await self.say("newcomer")
        return refusal.value


def relay_settings(hold: Path, greeter: str = UNUSED_ADDRESS, **config: str) -> lifecycle_pb2.ModuleSettings:
    return settings(config={"hold_dir": str(hold), **config}, dependencies={"greeter": greeter})


def start_relay(spawn, tmp_path: Path, greeter: str = UNUSED_ADDRESS) -> tuple[ModuleProcess, Path]:
    hold = tmp_path / "hold"
    hold.mkdir()
    relay = spawn(RELAY)
    relay.bring_up(relay_settings(hold, greeter))
    return relay, hold


async def hold_a_call(calls: Calls, hold: Path) -> asyncio.Task[greeter_pb2.SayHelloResponse]:
    """A call the module is in the middle of (it answers once `release` exists)."""
    held = asyncio.create_task(calls.say("hold"))
    await eventually(lambda: exists(hold / "held"), "the held call to reach the module")
    return held


async def assert_draining(calls: Calls, state: State) -> None:
    """While it drains: health NOT_SERVING, new calls of its services refused as retriable."""
    await eventually(lambda: _is(calls, state), f"the module to be {state.name}")
    assert await calls.serving() == health_pb2.HealthCheckResponse.NOT_SERVING
    refusal = await calls.refused()
    assert refusal.code() == grpc.StatusCode.UNAVAILABLE
    assert "finishes the calls in flight" in (refusal.details() or "")


async def _is(calls: Calls, state: State) -> bool:
    return await calls.state() is state


def test_stop_finishes_the_call_in_flight_and_refuses_new_ones(spawn, tmp_path):
    relay, hold = start_relay(spawn, tmp_path)

    async def scenario() -> lifecycle_pb2.StopResponse:
        async with relay.transport.channel(relay.address) as channel:
            calls = Calls(channel)
            held = await hold_a_call(calls, hold)
            grace = duration_pb2.Duration(seconds=WAIT_SECONDS)
            stopping = asyncio.ensure_future(
                calls.lifecycle.Stop(lifecycle_pb2.StopRequest(grace=grace, reason="test"), timeout=WAIT_SECONDS)
            )
            await assert_draining(calls, State.STOPPING)
            assert not stopping.done(), "the stop did not wait for the call in flight"
            (hold / "release").touch()
            assert (await held).message == "released"
            return await stopping

    stopped = asyncio.run(scenario())
    assert State(stopped.status.state) is State.STOPPED and not stopped.forced
    assert (tmp_path / "state-0" / "stopped").read_text() == "running calls: 0"
    relay.popen.terminate()
    assert relay.popen.wait(timeout=WAIT_SECONDS) == 0


def test_sigterm_drains_then_the_process_exits(spawn, tmp_path):
    relay, hold = start_relay(spawn, tmp_path)

    async def scenario() -> None:
        async with relay.transport.channel(relay.address) as channel:
            calls = Calls(channel)
            held = await hold_a_call(calls, hold)
            relay.popen.send_signal(signal.SIGTERM)
            await assert_draining(calls, State.STOPPING)
            (hold / "release").touch()
            assert (await held).message == "released"

    asyncio.run(scenario())
    assert relay.popen.wait(timeout=WAIT_SECONDS) == 0
    assert (tmp_path / "state-0" / "stopped").read_text() == "running calls: 0"


def test_a_reload_with_new_config_drains_before_it_re_initializes(spawn, tmp_path):
    relay, hold = start_relay(spawn, tmp_path)

    async def scenario() -> None:
        async with relay.transport.channel(relay.address) as channel:
            calls = Calls(channel)
            held = await hold_a_call(calls, hold)
            reloading = asyncio.ensure_future(
                calls.lifecycle.Reload(
                    lifecycle_pb2.ReloadRequest(settings=relay_settings(hold, label="new")), timeout=WAIT_SECONDS
                )
            )
            await assert_draining(calls, State.INITIALIZING)
            (hold / "release").touch()
            assert (await held).count == 1
            reloaded = await reloading
            assert State(reloaded.status.state) is State.RUNNING
            assert (await calls.say("again")).count == 2

    asyncio.run(scenario())
    assert (tmp_path / "state-0" / "stopped").read_text() == "running calls: 0"


def test_a_reload_that_moves_a_dependency_keeps_the_module_and_follows_it(spawn, tmp_path):
    first = spawn(GREETER)
    first.bring_up()
    second = spawn(GREETER)
    second.bring_up(settings(config={"greeting": "Hi"}))
    relay, hold = start_relay(spawn, tmp_path, greeter=first.address)

    async def scenario() -> None:
        async with relay.transport.channel(relay.address) as channel:
            calls = Calls(channel)
            assert (await calls.say("via:Ada")).message == "Hello, Ada!"
            held = await hold_a_call(calls, hold)
            reloaded = await calls.lifecycle.Reload(
                lifecycle_pb2.ReloadRequest(settings=relay_settings(hold, second.address)), timeout=WAIT_SECONDS
            )
            assert State(reloaded.status.state) is State.RUNNING
            moved = await calls.say("via:Ada")
            assert moved.message == "Hi, Ada!", "the stub made at initialize still calls the old address"
            assert moved.count == 1, "the reload re-ran initialize"
            (hold / "release").touch()
            assert (await held).message == "released"

    asyncio.run(scenario())
    assert not (tmp_path / "state-2" / "stopped").exists(), "the reload ran the stop hook"
