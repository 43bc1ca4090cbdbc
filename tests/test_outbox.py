"""The outbox against a real nats-server: a state change and its event commit together,
and the event reaches JetStream exactly once, whether NATS was away at the commit, the
writing process stopped before relaying it, or (for a rollback) not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
import pytest

from mesh.protocol.cloudevents import ID_HEADER
from mesh.protocol.names import EVENT_STREAM
from sdk.testing import EmbeddedNats, ModuleHarness, eventually

MODULE_TOML = """
name = "outbox-probe"
version = "1.0.0"
description = "Writes rows and their events through an outbox."
[events]
publishes = ["thing.created"]
[run]
entry = "module:Probe"
"""

MODULE_PY = """
import sdk
from pydantic import BaseModel


class ThingCreated(BaseModel):
    name: str


class ProbeConfig(BaseModel):
    database: str


class Probe(sdk.Module):
    config_model = ProbeConfig
    event_models = {"thing.created": ThingCreated}

    async def initialize(self, ctx):
        self.ctx = ctx
        self.db = await sdk.Database.open(
            __import__("pathlib").Path(ctx.config.database),
            schema="CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY);",
            outbox=ctx,
        )

    async def stop(self):
        await self.db.close()

    async def create(self, name, *, fail=False):
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO things VALUES (?)", (name,))
            event_id = tx.publish("thing.created", ThingCreated(name=name), subject=name)
            if fail:
                raise RuntimeError("rolled back on purpose")
        return event_id

    async def things(self):
        return [row["name"] for row in await self.db.query("SELECT name FROM things ORDER BY name")]
"""


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "modules" / "outbox_probe"
    folder.mkdir(parents=True)
    (folder / "module.toml").write_text(MODULE_TOML)
    (folder / "module.py").write_text(MODULE_PY)
    return folder


async def stored_event_ids(url: str) -> list[str]:
    """The ids of every event in the event stream, in order."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        count = (await js.stream_info(EVENT_STREAM)).state.messages
        ids = []
        for sequence in range(1, count + 1):
            message = await js.get_msg(EVENT_STREAM, sequence)
            ids.append((message.headers or {})[ID_HEADER])
        return ids
    finally:
        await client.close()


async def test_an_event_written_while_nats_is_away_arrives_once_when_it_is_back(
    probe_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "jetstream"
    config: dict[str, Any] = {"database": str(tmp_path / "probe.db")}
    first = EmbeddedNats(data_dir=data_dir)
    async with first:
        port = int(first.url.rsplit(":", 1)[1])
        async with ModuleHarness(probe_dir, nats=first.url, config=config) as harness:
            probe: Any = harness.module
            early = await probe.create("early")
            await eventually(lambda: probe.db.outbox.depth == 0, "the first event to be relayed")
            await first.__aexit__(None, None, None)  # NATS goes away

            during = await probe.create("during-outage")
            assert await probe.things() == ["during-outage", "early"]  # the state is committed
            assert probe.db.outbox.depth == 1  # and its event waits in the outbox

            async with EmbeddedNats(port=port, data_dir=data_dir) as second:
                await eventually(lambda: probe.db.outbox.depth == 0, "the event to be relayed once NATS is back")
                assert await stored_event_ids(second.url) == [early, during]


async def test_a_new_process_relays_what_the_last_one_left_and_a_rollback_publishes_nothing(
    probe_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "jetstream"
    config: dict[str, Any] = {"database": str(tmp_path / "probe.db")}
    async with EmbeddedNats(data_dir=data_dir) as server:
        port = int(server.url.rsplit(":", 1)[1])
        async with ModuleHarness(probe_dir, nats=server.url, config=config) as writer:
            await eventually(lambda: True, "the module to run")
            await server.__aexit__(None, None, None)  # NATS goes away, then the writer stops
            probe: Any = writer.module
            left = await probe.create("left-behind")
            with pytest.raises(RuntimeError, match="on purpose"):
                await probe.create("rolled-back", fail=True)
            assert await probe.things() == ["left-behind"]
            assert probe.db.outbox.depth == 1
        async with EmbeddedNats(port=port, data_dir=data_dir) as back:
            async with ModuleHarness(probe_dir, nats=back.url, config=config) as reader:
                relayed: Any = reader.module
                await eventually(lambda: relayed.db.outbox.depth == 0, "the leftover event to be relayed")
                assert await stored_event_ids(back.url) == [left]
