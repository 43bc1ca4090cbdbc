"""The inventory module through sdk.testing."""

import grpc
import pytest

from inventory.v1 import inventory_pb2, inventory_pb2_grpc


async def test_sets_reserves_and_refuses_overselling(module_harness):
    async with module_harness("modules/inventory") as harness:
        stub = harness.stub(inventory_pb2_grpc.InventoryStub)
        await stub.SetStock(inventory_pb2.SetStockRequest(sku="book-42", quantity=3))
        assert (await stub.Reserve(inventory_pb2.ReserveRequest(sku="book-42", quantity=2))).quantity == 1
        with pytest.raises(grpc.aio.AioRpcError) as oversold:
            await stub.Reserve(inventory_pb2.ReserveRequest(sku="book-42", quantity=2))
        assert oversold.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (await stub.GetStock(inventory_pb2.GetStockRequest(sku="book-42"))).quantity == 1
