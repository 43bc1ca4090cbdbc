"""The inventory module through sdk.testing."""

import asyncio

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


async def test_concurrent_reservations_never_oversell(module_harness):
    async with module_harness("modules/inventory") as harness:
        stub = harness.stub(inventory_pb2_grpc.InventoryStub)
        await stub.SetStock(inventory_pb2.SetStockRequest(sku="book-42", quantity=10))

        async def reserve() -> grpc.StatusCode:
            try:
                await stub.Reserve(inventory_pb2.ReserveRequest(sku="book-42", quantity=1))
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(reserve() for _ in range(50)))
        assert codes.count(grpc.StatusCode.OK) == 10
        assert codes.count(grpc.StatusCode.FAILED_PRECONDITION) == 40
        assert (await stub.GetStock(inventory_pb2.GetStockRequest(sku="book-42"))).quantity == 0


async def test_refuses_a_sku_past_the_limit(module_harness):
    async with module_harness("modules/inventory") as harness:
        stub = harness.stub(inventory_pb2_grpc.InventoryStub)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SetStock(inventory_pb2.SetStockRequest(sku="x" * 5000, quantity=1))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
