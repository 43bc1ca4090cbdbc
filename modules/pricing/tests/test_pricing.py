"""The pricing module through sdk.testing: quotes from order events, per-tenant prices."""

import nats

from mesh.control.tenancy import TenancyStore
from orders.events import OrderCreated
from pricing.v1 import pricing_pb2, pricing_pb2_grpc
from sdk.testing import Verdict, eventually


async def test_quotes_orders_with_each_tenants_prices(module_harness, mesh_nats):
    async with module_harness("modules/pricing", config={"unit_price": 250}) as harness:
        client = await nats.connect(mesh_nats.url)
        store = TenancyStore(client.jetstream())
        await store.set_enabled("eu", "pricing", True, "test")
        await store.set_override("pricing", "eu", "", {"currency": "EUR", "markup_percent": 10}, "test")
        await client.close()
        tenants = harness.context.tenants
        await eventually(
            lambda: tenants.is_enabled("eu") and tenants.config_for("eu").currency == "EUR",
            "pricing to see eu enabled with its own prices",
        )
        for order_id, tenant in (("o-us", ""), ("o-eu", "eu")):
            order = OrderCreated(order_id=order_id, user_id="u", sku="s", quantity=2)
            outcomes = await harness.publish("order.created", order, tenant=tenant)
            assert outcomes["quote"].verdict is Verdict.ACK
        stub = harness.stub(pricing_pb2_grpc.PricingStub)
        plain = await stub.GetQuote(pricing_pb2.GetQuoteRequest(order_id="o-us"))
        european = await stub.GetQuote(pricing_pb2.GetQuoteRequest(order_id="o-eu"), metadata=[("x-tenant-id", "eu")])
    assert (plain.amount, plain.currency) == (500, "USD")
    assert (european.amount, european.currency) == (550, "EUR")
