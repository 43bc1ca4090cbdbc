"""Orders: checks the user, reserves stock, records the order in SQLite and publishes
`order.created` in the same transaction (through the outbox); follows `inventory.updated`
into its cache (whose hit rate is a metric)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import grpc

import sdk
from inventory.events import InventoryUpdated
from inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orders.events import OrderCreated
from orders.v1 import orders_pb2, orders_pb2_grpc
from users.v1 import users_pb2, users_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    tenant TEXT NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
"""


class Orders(sdk.Module, orders_pb2_grpc.OrdersServicer):
    event_models: ClassVar = {"order.created": OrderCreated}

    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.ctx = ctx
        self.users = ctx.client("users", users_pb2_grpc.UsersStub)
        self.inventory = ctx.client("inventory", inventory_pb2_grpc.InventoryStub)
        self.db = await ctx.database("orders.db", schema=SCHEMA)

    async def stop(self) -> None:
        await self.db.close()

    async def health(self) -> sdk.Health:
        notifications = (
            sdk.ComponentHealth("notifications")
            if self.ctx.has_dependency("notifications")
            else sdk.ComponentHealth("notifications", sdk.HealthStatus.DEGRADED, message="absent: no notifications")
        )
        return sdk.Health.of(notifications)

    async def PlaceOrder(
        self, request: orders_pb2.PlaceOrderRequest, context: ServicerContext
    ) -> orders_pb2.PlaceOrderResponse:
        tenant = sdk.tenant_of(context)
        metadata = sdk.tenant_metadata(tenant)
        if request.quantity <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"quantity must be positive, got {request.quantity}")
        try:
            await self.users.GetUser(users_pb2.GetUserRequest(id=request.user_id), metadata=metadata)
            await self.inventory.Reserve(
                inventory_pb2.ReserveRequest(sku=request.sku, quantity=request.quantity), metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            await context.abort(error.code(), f"cannot place the order: {error.details()}")
        order = orders_pb2.Order(
            id=f"o-{uuid.uuid4().hex[:8]}", user_id=request.user_id, sku=request.sku, quantity=request.quantity
        )
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                (tenant, order.id, order.user_id, order.sku, order.quantity),
            )
            tx.publish(
                "order.created",
                OrderCreated(order_id=order.id, user_id=order.user_id, sku=order.sku, quantity=order.quantity),
                tenant=tenant or None,
                subject=order.id,
            )
        return orders_pb2.PlaceOrderResponse(order=order)

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: ServicerContext
    ) -> orders_pb2.GetOrderResponse:
        rows = await self.db.query(
            "SELECT id, user_id, sku, quantity FROM orders WHERE tenant = ? AND id = ?",
            (sdk.tenant_of(context), request.id),
        )
        if not rows:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no order {request.id!r}")
        return orders_pb2.GetOrderResponse(order=orders_pb2.Order(**dict(rows[0])))

    @sdk.on("inventory.updated")
    async def remember_stock(self, event: sdk.Event[InventoryUpdated]) -> None:
        await self.ctx.cache.set(f"stock.{event.tenant or '_'}.{event.data.sku}", str(event.data.quantity).encode())

    async def GetKnownStock(
        self, request: orders_pb2.GetKnownStockRequest, context: ServicerContext
    ) -> orders_pb2.GetKnownStockResponse:
        cached = await self.ctx.cache.get(f"stock.{sdk.tenant_of(context) or '_'}.{request.sku}")
        if cached is None:
            return orders_pb2.GetKnownStockResponse(known=False)
        return orders_pb2.GetKnownStockResponse(quantity=int(cached), known=True)
