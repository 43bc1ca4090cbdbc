"""Malformed NATS messages cannot break a module: in a running mesh, ~200 messages that are no
valid event (missing or lying CloudEvents headers, non-JSON or wrong-schema data, huge or deeply
nested JSON, binary junk) and an event whose handling would need a NATS key too long for the
server reach orders (Python SDK) and audit (Node.js). Each is dead-lettered once with its reason,
nothing stays pending redelivery, both modules keep consuming, and `mesh dlq` shows them all.
Real processes, real nats-server."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext

from audit.v1 import audit_pb2, audit_pb2_grpc
from conftest import PROJECT
from mesh.control.dlq import DeadLetter, list_dead_letters
from mesh.protocol.names import EVENT_STREAM, consumer_name
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh
from orders.v1 import orders_pb2, orders_pb2_grpc
from sdk.testing import eventually

pytestmark = pytest.mark.e2e

AUDIT = PROJECT / "modules" / "audit"
ORDERS_CONSUMER = consumer_name("orders", "remember_stock")
AUDIT_CONSUMER = "audit--record"
MESSAGES_PER_KIND = 16


@dataclass(frozen=True)
class Malformed:
    """One message no handler can take, and the consumer that receives it."""

    kind: str
    subject: str
    headers: dict[str, str] | None
    data: bytes
    consumer: str


def attributes(event_id: str, event_type: str, **extra: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": event_type,
        "ce-source": "mesh://fuzz",
        "content-type": "application/json",
        **extra,
    }


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != name}


# Each kind makes one bad message from (id, event type, subject tenant); none of them is
# readable by orders' inventory.updated handler or by audit's handler.
KINDS: dict[str, Callable[[str, str], tuple[dict[str, str] | None, bytes]]] = {
    "no headers": lambda i, t: (None, b'{"sku": "a", "quantity": 1}'),
    "no ce-id": lambda i, t: (without(attributes(i, t), "ce-id"), b'{"sku": "a", "quantity": 1}'),
    "no ce-type": lambda i, t: (without(attributes(i, t), "ce-type"), b'{"sku": "a", "quantity": 1}'),
    "no ce-specversion": lambda i, t: (without(attributes(i, t), "ce-specversion"), b'{"sku": "a", "quantity": 1}'),
    "tenant 'a b'": lambda i, t: (attributes(i, t, **{"ce-tenant": "a b"}), b'{"sku": "a", "quantity": 1}'),
    "type lies": lambda i, t: (attributes(i, "user.deleted"), b'{"sku": "a", "quantity": 1}'),
    "not JSON": lambda i, t: (attributes(i, t), b"sku=a; quantity=1"),
    "wrong schema": lambda i, t: (attributes(i, t), b'[{"sku": 5, "quantity": "many"}]'),
    "huge JSON": lambda i, t: (attributes(i, t), b"[" + b"0," * 150_000 + b"0]"),
    "deeply nested JSON": lambda i, t: (attributes(i, t), b"[" * 50_000 + b"]" * 50_000),
    "binary junk": lambda i, t: (attributes(i, t), bytes(range(256)) * 8),
    "empty data": lambda i, t: (attributes(i, t), b""),
    "huge header": lambda i, t: (attributes(i, t, **{"ce-subject": "h" * 60_000}), b"\xff\xfe"),
}
TARGETS = (
    ("mesh.evt._.inventory.updated", "inventory.updated", ORDERS_CONSUMER),
    ("mesh.evt._.order.created", "order.created", AUDIT_CONSUMER),
    ("mesh.evt._.transaction.completed", "transaction.completed", AUDIT_CONSUMER),
)


def malformed_messages() -> list[Malformed]:
    """~200 bad messages, every kind to both modules, in a fixed order."""
    messages = []
    targets = itertools.cycle(TARGETS)
    for n in range(MESSAGES_PER_KIND):
        for kind, make in KINDS.items():
            subject, event_type, consumer = next(targets)
            headers, data = make(f"bad-{n}-{kind.replace(' ', '-')}", event_type)
            messages.append(Malformed(kind, subject, headers, data, consumer))
    return messages


async def settled(js: JetStreamContext, consumer: str) -> bool:
    """Whether `consumer` has every message delivered and answered: none pending, none unacknowledged."""
    info = await js.consumer_info(EVENT_STREAM, consumer)
    return info.num_pending == 0 and info.num_ack_pending == 0


def modules_folder(mesh: MeshDir) -> None:
    for name in ("users", "inventory", "orders", "audit"):
        (mesh.modules / name).symlink_to(PROJECT / "modules" / name, target_is_directory=True)


def test_malformed_events_are_dead_lettered_once_and_every_module_keeps_consuming(tmp_path: Path) -> None:
    assert (AUDIT / "node_modules").is_dir(), "run `make test` (it installs the module's npm dependencies)"
    mesh = MeshDir(tmp_path)
    modules_folder(mesh)
    bad = malformed_messages()
    assert len(bad) >= 150
    with mesh.up() as running:
        modules = running.wait_until_up()
        published = asyncio.run(publish_and_check(running, modules, bad))
        dlq_cli_survives(mesh, running, published)


async def publish_and_check(running: RunningMesh, modules: dict[str, Any], bad: list[Malformed]) -> dict[int, str]:
    """Publish the bad messages, a 5,000-character sku and then valid events; return the
    stream sequence of each message that must be dead-lettered, with its kind."""
    client = await nats.connect(running.nats_url, **running.nats_login())
    js = client.jetstream()
    expected: dict[int, str] = {}
    for message in bad:
        ack = await js.publish(message.subject, message.data, headers=message.headers)
        expected[ack.seq] = message.kind
    long_sku = json.dumps({"sku": "s" * 5000, "quantity": 3}).encode()
    ack = await js.publish(
        "mesh.evt._.inventory.updated", long_sku, headers=attributes("long-sku", "inventory.updated")
    )
    expected[ack.seq] = "5,000-character sku"
    # valid events after all of them: each module must still be consuming to handle its own
    await js.publish(
        "mesh.evt._.inventory.updated",
        b'{"sku": "after-the-junk", "quantity": 7}',
        headers=attributes("valid-stock", "inventory.updated"),
    )
    await js.publish(
        "mesh.evt._.order.created",
        b'{"order_id": "o-after", "user_id": "u", "sku": "after-the-junk", "quantity": 1}',
        headers=attributes("valid-order", "order.created"),
    )

    async with running.channel(modules["orders"].address) as channel:
        orders = orders_pb2_grpc.OrdersStub(channel)

        async def stock_known() -> bool:
            known = await orders.GetKnownStock(orders_pb2.GetKnownStockRequest(sku="after-the-junk"))
            return known.known and known.quantity == 7

        await eventually(stock_known, "orders to handle the valid event after the junk", within=WAIT_SECONDS)
    async with running.channel(modules["audit"].address) as channel:
        audit = audit_pb2_grpc.AuditStub(channel)

        async def audited() -> bool:
            entries = (await audit.ListEntries(audit_pb2.ListEntriesRequest(), timeout=WAIT_SECONDS)).entries
            return any(entry.event_id == "valid-order" for entry in entries)

        await eventually(audited, "audit to handle the valid event after the junk", within=WAIT_SECONDS)

    async def all_settled() -> bool:
        return await settled(js, ORDERS_CONSUMER) and await settled(js, AUDIT_CONSUMER)

    await eventually(all_settled, "both consumers to answer every message", within=WAIT_SECONDS)
    letters = await eventually(
        lambda: _dead_letters_once(client, len(expected)), "every bad message dead-lettered", within=WAIT_SECONDS
    )
    by_origin = Counter(int(letter.headers["Nats-Msg-Id"].rsplit("-", 1)[1]) for letter in letters)
    assert by_origin == Counter(expected.keys()), "each bad message dead-lettered exactly once, and nothing else"
    for letter in letters:
        origin = int(letter.headers["Nats-Msg-Id"].rsplit("-", 1)[1])
        assert letter.headers.get("mesh-dlq-reason"), f"no reason for the {expected[origin]} message"
    reasons = {expected[int(letter.headers["Nats-Msg-Id"].rsplit("-", 1)[1])]: letter.reason for letter in letters}
    assert "cache key" in reasons["5,000-character sku"]
    assert "missing header" in reasons["no ce-id"]
    assert await settled(js, ORDERS_CONSUMER) and client.is_connected
    await client.close()
    return {letter.seq: expected[int(letter.headers["Nats-Msg-Id"].rsplit("-", 1)[1])] for letter in letters}


async def _dead_letters_once(client: NatsClient, count: int) -> list[DeadLetter] | None:
    letters = await list_dead_letters(client)
    assert len(letters) <= count, f"{len(letters)} dead letters for {count} bad messages"
    return letters if len(letters) == count else None


def dlq_cli_survives(mesh: MeshDir, running: RunningMesh, letters: dict[int, str]) -> None:
    """`mesh dlq list --json` and `show` on every kind of dead letter, as an operator runs them."""
    state = ("--state-dir", str(mesh.state))
    listed = mesh.run_cli("dlq", "list", "--json", *state)
    assert listed.returncode == 0, listed.stderr[-2000:]
    fields = json.loads(listed.stdout)
    assert {entry["seq"] for entry in fields} == set(letters)
    assert all(entry["reason"] for entry in fields)
    assert all(len(json.dumps(entry["data"])) < 10_000 for entry in fields), "bodies are shown as bounded excerpts"
    table = mesh.run_cli("dlq", "list", *state)
    assert table.returncode == 0, table.stderr[-2000:]
    one_of_each = {kind: seq for seq, kind in sorted(letters.items())}
    for kind, seq in one_of_each.items():
        shown = mesh.run_cli("dlq", "show", str(seq), *state)
        assert shown.returncode == 0, f"{kind}: {shown.stderr[-2000:]}"
        letter = json.loads(shown.stdout)
        assert letter["seq"] == seq and letter["reason"], kind
        assert len(shown.stdout) < 20_000, f"{kind}: show printed {len(shown.stdout)} characters"
