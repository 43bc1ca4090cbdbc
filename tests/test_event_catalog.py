"""`mesh events` (the catalogue and its AsyncAPI form) and `mesh dlq` (dead letters)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys

from shop.events import OrderCreated

from conftest import PROJECT
from mesh.control.catalog import build_catalog
from mesh.control.discovery import discover
from sdk.testing import eventually

FIXTURES = PROJECT / "tests" / "fixtures" / "modules"


def modules_folder(tmp_path):
    folder = tmp_path / "modules"
    folder.mkdir()
    for name in ("shop", "ledger"):
        shutil.copytree(FIXTURES / name, folder / name)
    lonely = folder / "lonely"
    lonely.mkdir()
    manifest = 'name = "lonely"\nversion = "1.0.0"\n[events]\nsubscribes = ["invoice.paid"]\n'
    (lonely / "module.toml").write_text(manifest + '[run]\ncommand = ["node", "x.js"]\n')
    return folder


def mesh(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_catalogue_lists_publishers_subscribers_and_schemas(tmp_path):
    catalog = build_catalog(discover(modules_folder(tmp_path)))
    created = catalog.types["order.created"]
    assert created.publishers == ["shop"]
    assert sorted((s.module, s.pattern, s.handler) for s in created.subscribers) == [
        ("ledger", "order.*", "audit"),
        ("ledger", "order.created", "book"),
    ]
    assert created.schema["title"] == "OrderCreated"
    assert set(created.schema["properties"]) == {"order_id", "amount"}
    assert [s.module for s in catalog.types["order.cancelled"].subscribers] == ["ledger"]
    assert catalog.warnings == ["module lonely subscribes to 'invoice.paid', which no module publishes"]


def test_mesh_events_prints_the_table_warns_and_writes_asyncapi(tmp_path):
    folder = modules_folder(tmp_path)
    table = mesh("events", "--modules", str(folder), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "order.created" in table.stdout and "OrderCreated" in table.stdout
    assert "mesh events: warning: module lonely subscribes to 'invoice.paid', which no module publishes" in table.stderr

    target = tmp_path / "asyncapi.json"
    written = mesh("events", "--modules", str(folder), "--asyncapi", str(target), cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    document = json.loads(target.read_text())
    assert document["asyncapi"] == "3.0.0"
    assert document["channels"]["order_created"]["address"] == "mesh.evt.{tenant}.order.created"
    actions = sorted((key, op["action"]) for key, op in document["operations"].items() if key.endswith("order_created"))
    assert actions == [
        ("ledger__audit__receive__order_created", "receive"),
        ("ledger__book__receive__order_created", "receive"),
        ("shop__send__order_created", "send"),
    ]
    assert document["components"]["messages"]["order_created"]["payload"]["title"] == "OrderCreated"

    def resolve(reference: str):
        node = document
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def references(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)

    for reference in references(document):
        assert resolve(reference) is not None, reference


async def test_mesh_dlq_lists_shows_and_replays(module_harness, mesh_nats, tmp_path):
    async with module_harness(FIXTURES / "ledger") as ledger, module_harness(FIXTURES / "shop") as shop:
        event_id = await shop.module.ctx.publish("order.created", OrderCreated(order_id="dlq-cli", amount=-1))

        async def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(mesh, "dlq", *args, "--nats-url", mesh_nats.url, cwd=tmp_path)

        async def listed_letters():
            listed = await cli("list", "--module", "ledger", "--json")
            return [letter for letter in json.loads(listed.stdout) if letter["event_id"] == event_id]

        letters = await eventually(listed_letters, f"mesh dlq list to show the dead letter of {event_id}")
        seq = str(letters[0]["seq"])
        table = await cli("list")
        assert "ledger" in table.stdout and "book" in table.stdout
        shown = await cli("show", seq)
        assert shown.returncode == 0
        detail = json.loads(shown.stdout)
        assert detail["event_id"] == event_id and detail["handler"] == "book"
        assert detail["data"] == {"order_id": "dlq-cli", "amount": -1}
        assert "negative amount -1" in detail["reason"]

        def audited_ids():
            return [audited_id for _, _, audited_id in ledger.module.audited]

        await eventually(lambda: event_id in audited_ids(), "the original event to be audited")
        ledger.module.fail_negative = False
        replayed = await cli("replay", seq)
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed {seq} (event {event_id}) to ledger--book" in replayed.stdout
        await eventually(
            lambda: any(order.order_id == "dlq-cli" for order in ledger.module.booked), "the replayed event"
        )
        # audit takes events in order, one at a time: a replay wrongly sent to it would come
        # before this later event, so once the marker is audited the count below is final
        marker_id = await shop.module.ctx.publish("order.created", OrderCreated(order_id="marker", amount=1))
        await eventually(lambda: marker_id in audited_ids(), "a later event to be audited")
        assert audited_ids().count(event_id) == 1, "replay went to every subscriber"
        missing = await cli("show", seq)
        assert missing.returncode == 2 and f"no dead letter {seq}" in missing.stderr
