"""Stock levels in SQLite; every change publishes `inventory.updated` in the same transaction
(through the outbox), and a reservation is one conditional UPDATE, so stock is never oversold."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc

import sdk
from inventory.events import InventoryUpdated
from inventory.v1 import inventory_pb2, inventory_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

MAX_SKU_LENGTH = 200
"""A sku is an id, not a document: a longer one is refused (it would also not fit in the KV
keys and subjects that carry it)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    tenant TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (tenant, sku)
);
"""


class Inventory(sdk.Module, inventory_pb2_grpc.InventoryServicer):
    event_models: ClassVar = {"inventory.updated": InventoryUpdated}

    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.db = await ctx.database("inventory.db", schema=SCHEMA)

    async def stop(self) -> None:
        await self.db.close()

    async def SetStock(
        self, request: inventory_pb2.SetStockRequest, context: ServicerContext
    ) -> inventory_pb2.SetStockResponse:
        if not request.sku or len(request.sku) > MAX_SKU_LENGTH or request.quantity < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a stock level needs a sku of 1 to {MAX_SKU_LENGTH} characters and a quantity >= 0",
            )
        tenant = sdk.tenant_of(context)
        async with self.db.transaction() as tx:
            await tx.execute("INSERT OR REPLACE INTO stock VALUES (?, ?, ?)", (tenant, request.sku, request.quantity))
            self._announce(tx, tenant, request.sku, request.quantity)
        return inventory_pb2.SetStockResponse(quantity=request.quantity)

    async def GetStock(
        self, request: inventory_pb2.GetStockRequest, context: ServicerContext
    ) -> inventory_pb2.GetStockResponse:
        rows = await self.db.query(
            "SELECT quantity FROM stock WHERE tenant = ? AND sku = ?", (sdk.tenant_of(context), request.sku)
        )
        return inventory_pb2.GetStockResponse(quantity=rows[0]["quantity"] if rows else 0)

    async def Reserve(
        self, request: inventory_pb2.ReserveRequest, context: ServicerContext
    ) -> inventory_pb2.ReserveResponse:
        tenant = sdk.tenant_of(context)
        if request.quantity <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"quantity must be positive, got {request.quantity}")
        async with self.db.transaction() as tx:
            # One conditional UPDATE: concurrent reservations can never both take the last units.
            reserved = await tx.execute(
                "UPDATE stock SET quantity = quantity - ? WHERE tenant = ? AND sku = ? AND quantity >= ?",
                (request.quantity, tenant, request.sku, request.quantity),
            )
            rows = await tx.query("SELECT quantity FROM stock WHERE tenant = ? AND sku = ?", (tenant, request.sku))
            left = rows[0]["quantity"] if rows else 0
            if reserved:
                self._announce(tx, tenant, request.sku, left)
        if not reserved:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"only {left} of {request.sku} in stock, {request.quantity} asked"
            )
        return inventory_pb2.ReserveResponse(quantity=left)

    @staticmethod
    def _announce(tx: sdk.Transaction, tenant: str, sku: str, quantity: int) -> None:
        tx.publish(
            "inventory.updated", InventoryUpdated(sku=sku, quantity=quantity), tenant=tenant or None, subject=sku
        )
