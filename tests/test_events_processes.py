"""Events between real module processes over a real nats-server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import nats
import pytest
from shop.events import OrderCreated

from conftest import PROJECT
from mesh.control.tenancy import TenancyStore
from processes import WAIT_SECONDS, settings
from sdk.testing import EmbeddedNats, ModuleHarness

FIXTURES = PROJECT / "tests" / "fixtures" / "modules"
SHOP = FIXTURES / "shop"
LEDGER = FIXTURES / "ledger"
MANY_EVENTS_WAIT_SECONDS = 180
"""For hundreds of events handled one at a time (and a server restart) on a busy machine."""


@pytest.fixture
def nats_server(tmp_path):
    with EmbeddedNats(data_dir=tmp_path / "jetstream") as server:
        yield server


def records(record_file) -> list[list[str]]:
    """The record file's lines, split: handler, event id, pid, tenant, attempt. A module may
    be writing the last line right now, so a last line without its newline is left out."""
    text = record_file.read_text() if record_file.exists() else ""
    return [line.split() for line in text[: text.rfind("\n") + 1].splitlines()]


def handled(record_file, handler: str, prefix: str, *, first_delivery_only: bool = False) -> Counter[str]:
    """How often each event id with `prefix` was handled by `handler`, from the record file
    (counting only first deliveries if asked: a redelivery after ack_wait is no double handling)."""
    return Counter(
        event_id
        for name, event_id, _, _, attempt in records(record_file)
        if name == handler and event_id.startswith(prefix) and (attempt == "1" or not first_delivery_only)
    )


def wait_until(condition, what: str, within: float = WAIT_SECONDS):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_replicas_share_the_durable_consumer_and_each_event_is_handled_once(spawn, nats_server, tmp_path):
    record = tmp_path / "record.log"
    env = {"MESH_TEST_RECORD": str(record)}

    async def enable() -> None:
        client = await nats.connect(nats_server.url)
        await TenancyStore(client.jetstream()).set_enabled("acme", "ledger", True, "test")
        await client.close()

    asyncio.run(enable())
    replicas = [spawn(LEDGER, env=env), spawn(LEDGER, env=env)]
    for replica in replicas:
        replica.bring_up(settings(nats_url=nats_server.url))
    shop = spawn(SHOP, env=env)
    shop.bring_up(settings(nats_url=nats_server.url, config={"burst": 200, "tenant": "acme", "prefix": "shared"}))

    expected = {f"shared-{n}" for n in range(200)}
    for handler in ("book", "audit"):
        wait_until(
            lambda handler=handler: set(handled(record, handler, "shared-", first_delivery_only=True)) == expected,
            f"the first delivery of all 200 orders to {handler}",
        )
    for module in (*replicas, shop):
        assert module.stop() == 0  # stopping drains the handlers: the record below is final
    for handler in ("book", "audit"):
        firsts = handled(record, handler, "shared-", first_delivery_only=True)
        assert set(firsts.values()) == {1}, f"both replicas were given the same event for {handler}"
        assert set(handled(record, handler, "shared-")) == expected
    lines = [parts for parts in records(record) if parts[1].startswith("shared-")]
    assert {tenant for _, _, _, tenant, _ in lines} == {"acme"}
    pids = {int(pid) for _, _, pid, _, _ in lines}
    assert pids <= {replica.popen.pid for replica in replicas}


def test_events_published_while_the_consumer_is_stopped_are_all_handled_after_it_starts(spawn, nats_server, tmp_path):
    record = tmp_path / "record.log"
    env = {"MESH_TEST_RECORD": str(record)}
    first = spawn(LEDGER, env=env)
    first.bring_up(settings(nats_url=nats_server.url, config={"audit": False}))
    assert first.stop() == 0

    async def publish_while_stopped() -> set[str]:
        async with ModuleHarness(SHOP, nats=nats_server) as shop:
            return {
                await shop.module.ctx.publish(
                    "order.created", OrderCreated(order_id=f"late-{n}", amount=n), event_id=f"late-{n}"
                )
                for n in range(1000)
            }

    published = asyncio.run(publish_while_stopped())
    assert handled(record, "book", "late-") == Counter()

    second = spawn(LEDGER, env=env)
    second.bring_up(settings(nats_url=nats_server.url, config={"audit": False}))
    seen = wait_until(
        lambda: set(c := handled(record, "book", "late-")) == published and c,
        "all 1000 events",
        within=MANY_EVENTS_WAIT_SECONDS,
    )
    assert set(seen) == published
    assert second.stop() == 0


def test_no_durable_event_is_lost_when_the_nats_server_restarts(spawn, tmp_path):
    record = tmp_path / "record.log"
    env = {"MESH_TEST_RECORD": str(record)}
    server = EmbeddedNats(data_dir=tmp_path / "jetstream")
    url = server.start()
    try:
        ledger = spawn(LEDGER, env=env)
        ledger.bring_up(settings(nats_url=url, config={"audit": False}))
        shop = spawn(SHOP, env=env)
        shop.bring_up(settings(nats_url=url, config={"burst": 400, "prefix": "flow", "interval": 0.005}))
        wait_until(lambda: len(handled(record, "book", "flow-")) > 20, "events flowing before the restart")
        server.stop()
        server = EmbeddedNats(data_dir=tmp_path / "jetstream", port=int(url.rpartition(":")[2]))
        server.start()
        expected = {f"flow-{n}" for n in range(400)}
        seen = wait_until(
            lambda: set(c := handled(record, "book", "flow-")) == expected and c,
            "all 400 events",
            within=MANY_EVENTS_WAIT_SECONDS,
        )
        assert set(seen) == expected
        assert "stop was forced" not in ledger.log.read_text()
    finally:
        server.stop()
