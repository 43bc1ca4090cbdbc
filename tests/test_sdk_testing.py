"""The author's testing tiers: `harness.publish` delivers an event to the module under test
and returns each handler's outcome once it is final, so effects are asserted right after;
`eventually` waits for an asynchronous effect with a deadline and says what it waited for;
`stand_ins=` serves fakes in the place of a module's dependencies. And what a new handler sees
of events published before it existed, and the replay script of sdk/README.md, run as printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from shop.events import OrderCreated, Ping

from sdk.testing import Verdict, eventually

FIXTURES = Path(__file__).parent / "fixtures" / "modules"
LEDGER = FIXTURES / "ledger"
PROJECT_MODULES = Path(__file__).parent.parent / "modules"


async def test_publish_returns_once_every_matching_handler_is_done(module_harness):
    async with module_harness(LEDGER) as ledger:
        outcomes = await ledger.publish("order.created", OrderCreated(order_id="o-1", amount=5), tenant="")
        assert {name: o.verdict for name, o in outcomes.items()} == {"book": Verdict.ACK, "audit": Verdict.ACK}
        assert [order.order_id for order in ledger.module.booked] == ["o-1"]
        assert [entry[0] for entry in ledger.module.audited] == ["order.created"]


async def test_publish_waits_through_redeliveries_to_the_final_outcome(module_harness):
    async with module_harness(LEDGER) as ledger:
        failing = await ledger.publish("order.created", OrderCreated(order_id="bad", amount=-3))
        assert failing["book"].verdict is Verdict.DEAD_LETTER
        assert "negative amount -3 (after 3 deliveries)" in failing["book"].reason
        assert "bad" not in [order.order_id for order in ledger.module.booked]

        ledger.module.fail_negative = False
        retried = await ledger.publish("order.created", OrderCreated(order_id="later", amount=-7))
        assert retried["book"].verdict is Verdict.ACK and ledger.module.attempts["later"] == 2
        dropped = await ledger.publish("order.created", OrderCreated(order_id="drop", amount=-999))
        assert dropped["book"].verdict is Verdict.DROP
        assert "drop" not in [order.order_id for order in ledger.module.booked]


async def test_publish_reaches_ephemeral_handlers_too(module_harness):
    async with module_harness(LEDGER) as ledger:
        outcomes = await ledger.publish("signal.ping", Ping(n=7))
        assert outcomes["ping"].verdict is Verdict.ACK and ledger.module.pings == [7]


async def test_publish_of_a_type_no_handler_takes_names_what_they_take(module_harness):
    async with module_harness(LEDGER) as ledger:
        with pytest.raises(ValueError, match=r"no handler for 'user\.created' \(its handlers take: .*order\.created"):
            await ledger.publish("user.created", {"id": "u"})


async def test_eventually_returns_the_value_and_times_out_with_what_it_waited_for():
    seen = iter([0, None, "ready"])
    assert await eventually(lambda: next(seen), "the third look") == "ready"

    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"timed out after 0 s waiting for the impossible; last seen: False"):
        await eventually(never, "the impossible", within=0.05)


class FakeUsers:
    """Stands in for the users module's stub: knows one user."""

    async def GetUser(self, request, metadata=()):
        if request.id != "ada":
            raise LookupError(f"no user {request.id}")
        return object()


class FakeInventory:
    """Stands in for the inventory module's stub: records reservations."""

    def __init__(self) -> None:
        self.reserved: list[tuple[str, int, tuple]] = []

    async def Reserve(self, request, metadata=()):
        self.reserved.append((request.sku, request.quantity, tuple(metadata)))
        return object()


async def test_unit_module_uses_the_tests_dependencies_and_records_what_it_publishes():
    from orders.events import OrderCreated
    from orders.v1 import orders_pb2
    from sdk.testing import UnitModule

    inventory = FakeInventory()
    async with UnitModule(PROJECT_MODULES / "orders", clients={"users": FakeUsers(), "inventory": inventory}) as unit:
        request = orders_pb2.PlaceOrderRequest(user_id="ada", sku="book-42", quantity=2)
        reply = await unit.module.PlaceOrder(request, unit.call(tenant="acme"))
        assert reply.order.sku == "book-42"
        assert inventory.reserved == [("book-42", 2, (("x-tenant-id", "acme"),))]
        [event] = unit.published
        assert event.event_type == "order.created" and event.tenant == "acme"
        assert isinstance(event.payload, OrderCreated) and event.payload.quantity == 2
        assert not unit.context.has_dependency("notifications")


async def test_unit_module_refuses_what_a_real_module_would():
    from orders.v1 import orders_pb2
    from sdk import MeshError
    from sdk.testing import Aborted, UnitModule

    with pytest.raises(MeshError, match="unknown field 'colour'"):
        async with UnitModule(PROJECT_MODULES / "greeter", config={"colour": "red"}):
            pass
    with pytest.raises(ValueError, match=r"clients \['billing'\] are not dependencies"):
        async with UnitModule(PROJECT_MODULES / "orders", clients={"billing": object()}):
            pass
    async with UnitModule(
        PROJECT_MODULES / "orders", clients={"users": FakeUsers(), "inventory": FakeInventory()}
    ) as unit:
        with pytest.raises(Aborted) as aborted:
            await unit.module.PlaceOrder(orders_pb2.PlaceOrderRequest(user_id="ada", sku="s", quantity=0), unit.call())
        assert "quantity must be positive" in aborted.value.details
        with pytest.raises(MeshError, match=r"published 'user\.created', which .* does not declare"):
            await unit.context.publish("user.created", {})
        assert unit.published == []


async def test_stand_ins_serve_a_modules_dependencies_over_mtls(module_harness):
    import grpc

    from inventory.v1 import inventory_pb2, inventory_pb2_grpc
    from orders.v1 import orders_pb2, orders_pb2_grpc
    from users.v1 import users_pb2, users_pb2_grpc

    class Users(users_pb2_grpc.UsersServicer):
        async def GetUser(self, request, context):
            if request.id != "ada":
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.id}")
            return users_pb2.GetUserResponse(user=users_pb2.User(id=request.id))

    class Inventory(inventory_pb2_grpc.InventoryServicer):
        def __init__(self) -> None:
            self.reserved: list[str] = []

        async def Reserve(self, request, context):
            self.reserved.append(request.sku)
            return inventory_pb2.ReserveResponse(quantity=1)

    inventory = Inventory()
    async with module_harness(
        PROJECT_MODULES / "orders", stand_ins={"users": [Users()], "inventory": [inventory]}
    ) as orders:
        stub = orders.stub(orders_pb2_grpc.OrdersStub)
        placed = await stub.PlaceOrder(orders_pb2.PlaceOrderRequest(user_id="ada", sku="book-42", quantity=2))
        assert placed.order.sku == "book-42" and inventory.reserved == ["book-42"]
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.PlaceOrder(orders_pb2.PlaceOrderRequest(user_id="bob", sku="book-42", quantity=1))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "no user bob" in unknown.value.details()

    async with module_harness(PROJECT_MODULES / "orders", stand_ins={"users": [Users()], "inventory": []}) as orders:
        with pytest.raises(grpc.aio.AioRpcError) as unserved:
            await orders.stub(orders_pb2_grpc.OrdersStub).PlaceOrder(
                orders_pb2.PlaceOrderRequest(user_id="ada", sku="book-42", quantity=1)
            )
        assert unserved.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_harness_names_what_a_required_dependency_needs(module_harness):
    orders = PROJECT_MODULES / "orders"
    with pytest.raises(
        ValueError, match=r"requires \['inventory'\]; pass dependencies=.* or stand_ins=\{'inventory': \[\]\}"
    ):
        async with module_harness(orders, stand_ins={"users": []}):
            pass
    with pytest.raises(ValueError, match=r"dependencies \['billing'\] are not declared"):
        async with module_harness(orders, stand_ins={"users": [], "inventory": [], "billing": []}):
            pass
    with pytest.raises(ValueError, match=r"\['users'\] given both in dependencies= and in stand_ins="):
        async with module_harness(
            orders, dependencies={"users": "127.0.0.1:1"}, stand_ins={"users": [], "inventory": []}
        ):
            pass
    with pytest.raises(ValueError, match=r"stand-in for 'users': object inherits no generated \.\.\.Servicer"):
        async with module_harness(orders, stand_ins={"users": [object()], "inventory": []}):
            pass


def readme_replay_script() -> str:
    """The replay script of sdk/README.md, exactly as printed there."""
    readme = (Path(__file__).parent.parent / "sdk" / "README.md").read_text()
    section = readme.split("### Events published before a handler existed", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_a_new_handler_gets_only_new_events_and_the_readmes_replay_hands_it_the_stored_ones(
    module_harness, mesh_nats, tmp_path
):
    import asyncio
    import json
    import sys

    async with module_harness(FIXTURES / "shop") as shop:  # publishes before any ledger exists
        await shop.context.publish("order.created", OrderCreated(order_id="before", amount=1))
    async with module_harness(LEDGER) as ledger:
        await ledger.publish("order.created", OrderCreated(order_id="after", amount=2))
        # One consumer delivers in stream order: had "before" been delivered, it would be first.
        assert [order.order_id for order in ledger.module.booked] == ["after"]

        (tmp_path / ".mesh" / "nats-access").mkdir(parents=True)
        (tmp_path / ".mesh" / "coordinator.json").write_text(json.dumps({"nats_url": mesh_nats.url}))
        (tmp_path / ".mesh" / "nats-access" / "mesh-admin.json").write_text('{"user": "a", "password": "b"}')
        script = readme_replay_script().replace('"shipping--on_order_created"', '"ledger--book"')
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await replay.communicate()
        assert replay.returncode == 0, err.decode()
        assert out.decode() == "replayed 2 events to ledger--book\n"

        def booked_thrice() -> list[str] | None:
            booked = [order.order_id for order in ledger.module.booked]
            return booked if len(booked) == 3 else None

        assert await eventually(booked_thrice, "the two replayed orders") == ["after", "before", "after"]
        assert [entry[0] for entry in ledger.module.audited] == ["order.created"]  # the other handler: none
