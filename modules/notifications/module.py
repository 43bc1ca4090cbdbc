"""What would be sent, recorded in SQLite per tenant, for three kinds of events."""

from __future__ import annotations

from typing import Any

import grpc

import sdk
from notifications.v1 import notifications_pb2, notifications_pb2_grpc
from orders.events import OrderCreated
from transactions.events import TransactionCompleted
from users.events import UserCreated

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    tenant TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL, recipient TEXT NOT NULL,
    text TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (tenant, event_id)
);
"""


class Notifications(sdk.Module, notifications_pb2_grpc.NotificationsServicer):
    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.db = await sdk.Database.open(ctx.state_dir / "notifications.db", schema=SCHEMA)

    async def stop(self) -> None:
        await self.db.close()

    async def _record(self, event: sdk.Event[Any], recipient: str, text: str) -> None:
        # Keyed by event id: a redelivered event is recorded once.
        await self.db.execute(
            "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, julianday('now'))",
            (event.tenant, event.id, event.type, recipient, text),
        )

    @sdk.on("user.created")
    async def welcome(self, event: sdk.Event[UserCreated]) -> None:
        await self._record(event, event.data.user_id, f"Welcome, {event.data.name}!")

    @sdk.on("order.created")
    async def confirm_order(self, event: sdk.Event[OrderCreated]) -> None:
        order = event.data
        await self._record(event, order.user_id, f"Your order {order.order_id}: {order.quantity} x {order.sku}.")

    @sdk.on("transaction.completed")
    async def receipt(self, event: sdk.Event[TransactionCompleted]) -> None:
        paid = event.data
        await self._record(event, paid.to_user_id, f"You received {paid.amount} credits from {paid.from_user_id}.")

    async def ListNotifications(
        self, request: notifications_pb2.ListNotificationsRequest, context: ServicerContext
    ) -> notifications_pb2.ListNotificationsResponse:
        rows = await self.db.query(
            "SELECT event_type, recipient, text FROM outbox WHERE tenant = ? ORDER BY created",
            (sdk.tenant_of(context),),
        )
        return notifications_pb2.ListNotificationsResponse(
            notifications=[notifications_pb2.Notification(**dict(row)) for row in rows]
        )
