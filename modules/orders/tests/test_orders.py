"""The orders module through sdk.testing, with the real users and inventory modules."""

import grpc
import pytest

from inventory.v1 import inventory_pb2, inventory_pb2_grpc
from mesh.v1 import lifecycle_pb2
from orders.v1 import orders_pb2, orders_pb2_grpc
from sdk.testing import eventually
from users.v1 import users_pb2, users_pb2_grpc


async def test_places_orders_and_follows_stock_events(module_harness):
    async with module_harness("modules/users") as users, module_harness("modules/inventory") as inventory:
        async with module_harness(
            "modules/orders", dependencies={"users": users.address, "inventory": inventory.address}
        ) as orders:
            ada = (
                await users.stub(users_pb2_grpc.UsersStub).CreateUser(
                    users_pb2.CreateUserRequest(name="Ada", email="ada@example.org")
                )
            ).user
            await inventory.stub(inventory_pb2_grpc.InventoryStub).SetStock(
                inventory_pb2.SetStockRequest(sku="book-42", quantity=5)
            )
            stub = orders.stub(orders_pb2_grpc.OrdersStub)
            placed = (
                await stub.PlaceOrder(orders_pb2.PlaceOrderRequest(user_id=ada.id, sku="book-42", quantity=2))
            ).order
            assert (await stub.GetOrder(orders_pb2.GetOrderRequest(id=placed.id))).order.quantity == 2
            with pytest.raises(grpc.aio.AioRpcError) as unknown_user:
                await stub.PlaceOrder(orders_pb2.PlaceOrderRequest(user_id="u-ghost", sku="book-42", quantity=1))
            assert unknown_user.value.code() == grpc.StatusCode.NOT_FOUND

            async def stock_heard() -> bool:
                known = await stub.GetKnownStock(orders_pb2.GetKnownStockRequest(sku="book-42"))
                return known.known and known.quantity == 3

            await eventually(stock_heard, "orders to learn the stock left after the order (3)")
            health = (await orders.lifecycle.GetHealth(lifecycle_pb2.GetHealthRequest())).health
            metrics = (await orders.lifecycle.GetMetrics(lifecycle_pb2.GetMetricsRequest())).metrics
    assert health.message == "" and {c.name: c.status for c in health.components}["notifications"] == 2  # DEGRADED
    assert metrics.custom["cache_hit_rate"] > 0
