"""The author's testing tiers: `harness.publish` delivers an event to the module under test
and returns each handler's outcome once it is final, so effects are asserted right after;
`eventually` waits for an asynchronous effect with a deadline and says what it waited for."""

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
