"""The Node.js module (modules/audit) in a mesh like any other: sequenced by the coordinator,
serving Lifecycle, health and reflection, handling and publishing events in the same binding."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import grpc
import nats
import pytest

from audit.v1 import audit_pb2, audit_pb2_grpc
from conftest import PROJECT, tool
from inventory.v1 import inventory_pb2, inventory_pb2_grpc
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from meshkit import WAIT_SECONDS, MeshDir
from orders.v1 import orders_pb2, orders_pb2_grpc
from sdk import State
from sdk.testing import eventually
from users.v1 import users_pb2, users_pb2_grpc

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the Node.js module cannot run"),
]

AUDIT = PROJECT / "modules" / "audit"


def test_the_node_modules_own_tests():
    assert (AUDIT / "node_modules").is_dir(), "run `make test` (it installs the module's npm dependencies)"
    result = subprocess.run(["node", "--test", "test/"], cwd=AUDIT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout


def test_the_node_module_takes_part_in_the_mesh(tmp_path):
    assert (AUDIT / "node_modules").is_dir(), "run `make test` (it installs the module's npm dependencies)"
    mesh = MeshDir(tmp_path)
    for name in ("users", "inventory", "orders", "audit"):
        (mesh.modules / name).symlink_to(PROJECT / "modules" / name, target_is_directory=True)
    with mesh.up() as running:
        modules = running.wait_until_up()
        assert {name: State(m.state).name for name, m in modules.items()} == dict.fromkeys(
            ["users", "inventory", "orders", "audit"], "RUNNING"
        )
        audit = modules["audit"].address

        def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [tool("grpcurl"), "-plaintext", audit, *args], capture_output=True, text=True, timeout=WAIT_SECONDS
            )

        listed = grpcurl("list")
        assert {"audit.v1.Audit", "mesh.v1.Lifecycle", "grpc.health.v1.Health"} <= set(listed.stdout.split())
        health = grpcurl("grpc.health.v1.Health/Check")
        assert '"status": "SERVING"' in health.stdout
        nats_url = json.loads((mesh.state / "coordinator.json").read_text())["nats_url"]

        async def order_and_watch():
            client = await nats.connect(nats_url)
            recorded = []

            async def keep(message):
                recorded.append(message)

            await client.subscribe("mesh.evt.*.audit.recorded", cb=keep)
            await client.flush()  # subscribed at the server before the order that leads to the event
            async with grpc.aio.insecure_channel(modules["users"].address) as channel:
                user = (
                    await users_pb2_grpc.UsersStub(channel).CreateUser(
                        users_pb2.CreateUserRequest(name="Ada", email="ada@example.org")
                    )
                ).user
            async with grpc.aio.insecure_channel(modules["inventory"].address) as channel:
                await inventory_pb2_grpc.InventoryStub(channel).SetStock(
                    inventory_pb2.SetStockRequest(sku="b", quantity=2)
                )
            async with grpc.aio.insecure_channel(modules["orders"].address) as channel:
                order = (
                    await orders_pb2_grpc.OrdersStub(channel).PlaceOrder(
                        orders_pb2.PlaceOrderRequest(user_id=user.id, sku="b", quantity=1)
                    )
                ).order
            async with grpc.aio.insecure_channel(audit) as channel:
                stub = audit_pb2_grpc.AuditStub(channel)

                async def entries_once_recorded():
                    entries = (await stub.ListEntries(audit_pb2.ListEntriesRequest())).entries
                    return entries if entries and recorded else None

                entries = await eventually(
                    entries_once_recorded, "the audit entry and its audit.recorded event", within=WAIT_SECONDS
                )
                described = await lifecycle_pb2_grpc.LifecycleStub(channel).Describe(lifecycle_pb2.DescribeRequest())
            await client.close()
            return order, entries, recorded, described

        order, entries, recorded, described = asyncio.run(order_and_watch())
        assert [(e.event_type, json.loads(e.data_json)["order_id"]) for e in entries] == [("order.created", order.id)]
        assert recorded[0].headers["ce-type"] == "audit.recorded"
        assert recorded[0].headers["ce-source"] == "mesh://audit"
        assert json.loads(recorded[0].data) == {"event_id": entries[0].event_id, "event_type": "order.created"}
        assert described.manifest.name == "audit" and described.status.state == State.RUNNING.value
        assert running.signal_and_wait(2) == 0
    stopped = [line for line in (mesh.state / "logs" / "audit.log").read_text().splitlines() if "stopping" in line]
    assert stopped, "the Node.js module was not stopped gracefully"
