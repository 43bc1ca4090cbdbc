"""The pricing module through sdk.testing: quotes from order events, per-tenant prices."""

import asyncio

import nats

from mesh.control.tenancy import TenancyStore
from orders.events import OrderCreated
from pricing.v1 import pricing_pb2, pricing_pb2_grpc


async def publish_order(nats_url: str, order: OrderCreated, tenant: str) -> None:
    client = await nats.connect(nats_url)
    headers = {
        "ce-id": order.order_id,
        "ce-type": "order.created",
        "ce-source": "test",
        "ce-specversion": "1.0",
        "Nats-Msg-Id": order.order_id,
    }
    if tenant:
        headers["ce-tenant"] = tenant
    await client.jetstream().publish(
        f"mesh.evt.{tenant or '_'}.order.created", order.model_dump_json().encode(), headers=headers
    )
    await client.close()


async def quote_of(stub, order_id: str, tenant: str):
    metadata = [("x-tenant-id", tenant)] if tenant else []
    for _ in range(600):
        try:
            return await stub.GetQuote(pricing_pb2.GetQuoteRequest(order_id=order_id), metadata=metadata)
        except Exception:  # not quoted yet
            await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} was never quoted")


async def test_quotes_orders_with_each_tenants_prices(module_harness, mesh_nats):
    async with module_harness("modules/pricing", config={"unit_price": 250}) as harness:
        client = await nats.connect(mesh_nats.url)
        store = TenancyStore(client.jetstream())
        await store.set_enabled("eu", "pricing", True, "test")
        await store.set_override("pricing", "eu", "", {"currency": "EUR", "markup_percent": 10}, "test")
        await client.close()
        while not harness.context.tenants.is_enabled("eu"):  # noqa: ASYNC110 (a value the SDK updates)
            await asyncio.sleep(0.02)
        await publish_order(mesh_nats.url, OrderCreated(order_id="o-us", user_id="u", sku="s", quantity=2), "")
        await publish_order(mesh_nats.url, OrderCreated(order_id="o-eu", user_id="u", sku="s", quantity=2), "eu")
        stub = harness.stub(pricing_pb2_grpc.PricingStub)
        plain = await quote_of(stub, "o-us", "")
        european = await quote_of(stub, "o-eu", "eu")
    assert (plain.amount, plain.currency) == (500, "USD")
    assert (european.amount, european.currency) == (550, "EUR")
