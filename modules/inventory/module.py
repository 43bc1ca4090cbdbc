"""Stock levels in SQLite; every change publishes `inventory.updated`."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc

import sdk
from inventory.events import InventoryUpdated
from inventory.v1 import inventory_pb2, inventory_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    tenant TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (tenant, sku)
);
"""


class Inventory(sdk.Module, inventory_pb2_grpc.InventoryServicer):
    event_models: ClassVar = {"inventory.updated": InventoryUpdated}

    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.ctx = ctx
        self.db = await sdk.Database.open(ctx.state_dir / "inventory.db", schema=SCHEMA)

    async def stop(self) -> None:
        await self.db.close()

    async def _quantity(self, tenant: str, sku: str) -> int:
        rows = await self.db.query("SELECT quantity FROM stock WHERE tenant = ? AND sku = ?", (tenant, sku))
        return rows[0]["quantity"] if rows else 0

    async def _store(self, tenant: str, sku: str, quantity: int) -> None:
        await self.db.execute("INSERT OR REPLACE INTO stock VALUES (?, ?, ?)", (tenant, sku, quantity))
        await self.ctx.publish(
            "inventory.updated", InventoryUpdated(sku=sku, quantity=quantity), tenant=tenant or None, subject=sku
        )

    async def SetStock(
        self, request: inventory_pb2.SetStockRequest, context: ServicerContext
    ) -> inventory_pb2.SetStockResponse:
        if not request.sku or request.quantity < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a stock level needs a sku and a quantity >= 0")
        await self._store(sdk.tenant_of(context), request.sku, request.quantity)
        return inventory_pb2.SetStockResponse(quantity=request.quantity)

    async def GetStock(
        self, request: inventory_pb2.GetStockRequest, context: ServicerContext
    ) -> inventory_pb2.GetStockResponse:
        return inventory_pb2.GetStockResponse(quantity=await self._quantity(sdk.tenant_of(context), request.sku))

    async def Reserve(
        self, request: inventory_pb2.ReserveRequest, context: ServicerContext
    ) -> inventory_pb2.ReserveResponse:
        tenant = sdk.tenant_of(context)
        if request.quantity <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"quantity must be positive, got {request.quantity}")
        quantity = await self._quantity(tenant, request.sku)
        if request.quantity > quantity:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"only {quantity} of {request.sku} in stock, {request.quantity} asked",
            )
        await self._store(tenant, request.sku, quantity - request.quantity)
        return inventory_pb2.ReserveResponse(quantity=quantity - request.quantity)
