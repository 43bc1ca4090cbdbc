"""A lifecycle call whose caller goes away (a coordinator aborting start-up cancels what it
has in flight) still runs its transition to the end: the module does not stay INITIALIZING,
and a later Stop runs its stop hook."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sdk import State
from sdk.testing import eventually

MODULE = """
import asyncio

import sdk


class Slowpoke(sdk.Module):
    entered = asyncio.Event()
    release = asyncio.Event()
    calls: list[str] = []

    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.calls.append("initialize")
        self.entered.set()
        await self.release.wait()

    async def stop(self) -> None:
        self.calls.append("stop")
"""


def slowpoke(root: Path) -> Path:
    folder = root / "slowpoke"
    folder.mkdir()
    (folder / "module.toml").write_text('name = "slowpoke"\nversion = "1.0.0"\n\n[run]\nentry = "module:Slowpoke"\n')
    (folder / "module.py").write_text(MODULE)
    return folder


async def test_an_initialize_whose_caller_left_finishes_and_the_module_stops_cleanly(tmp_path, module_harness):
    async with module_harness(slowpoke(tmp_path), start=False) as harness:
        module = harness.module
        call = asyncio.ensure_future(harness.initialize())
        await eventually(module.entered.is_set, "the initialize hook to begin")
        call.cancel()
        lifecycle = harness.server.lifecycle
        await eventually(lambda: lifecycle.orphans, "the server to see its caller leave")
        module.release.set()
        await eventually(lambda: harness.state is State.INITIALIZED, "the transition to finish on its own")
        stopped = await harness.stop()
        assert State(stopped.status.state) is State.STOPPED
        assert module.calls == ["initialize", "stop"]
