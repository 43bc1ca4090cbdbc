"""What would be sent, recorded in SQLite per tenant, for three kinds of events; listed, or
followed as they are recorded (a server-streaming method: the gateway serves it as
Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
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
        self.stopping = ctx.stopping
        # The queues of the calls watching each tenant's notifications.
        self.watchers: defaultdict[str, set[asyncio.Queue[tuple[str, notifications_pb2.Notification]]]] = defaultdict(
            set
        )

    async def stop(self) -> None:
        await self.db.close()

    async def _record(self, event: sdk.Event[Any], recipient: str, text: str) -> None:
        # Keyed by event id: a redelivered event is recorded once.
        inserted = await self.db.execute(
            "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, julianday('now'))",
            (event.tenant, event.id, event.type, recipient, text),
        )
        if not inserted:
            return
        recorded = notifications_pb2.Notification(event_type=event.type, recipient=recipient, text=text)
        for queue in self.watchers.get(event.tenant, ()):
            queue.put_nowait((event.id, recorded))

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

    async def WatchNotifications(
        self, request: notifications_pb2.WatchNotificationsRequest, context: ServicerContext
    ) -> AsyncIterator[notifications_pb2.WatchNotificationsResponse]:
        tenant = sdk.tenant_of(context)
        arrivals: asyncio.Queue[tuple[str, notifications_pb2.Notification]] = asyncio.Queue()
        self.watchers[tenant].add(arrivals)  # before the query: nothing recorded meanwhile is missed
        try:
            rows = await self.db.query(
                "SELECT event_id, event_type, recipient, text FROM outbox WHERE tenant = ? ORDER BY created",
                (tenant,),
            )
            sent = set()
            for row in rows:
                sent.add(row["event_id"])
                if request.recipient in ("", row["recipient"]):
                    notification = notifications_pb2.Notification(
                        event_type=row["event_type"], recipient=row["recipient"], text=row["text"]
                    )
                    yield notifications_pb2.WatchNotificationsResponse(notification=notification)
            while (arrival := await self._next(arrivals)) is not None:
                event_id, notification = arrival
                if event_id not in sent and request.recipient in ("", notification.recipient):
                    yield notifications_pb2.WatchNotificationsResponse(notification=notification)
        finally:
            self.watchers[tenant].discard(arrivals)
            if not self.watchers[tenant]:
                del self.watchers[tenant]

    async def _next(
        self, arrivals: asyncio.Queue[tuple[str, notifications_pb2.Notification]]
    ) -> tuple[str, notifications_pb2.Notification] | None:
        """The next notification recorded, or None once the module is stopping."""
        if not arrivals.empty():
            return arrivals.get_nowait()
        arrived = asyncio.ensure_future(arrivals.get())
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait((arrived, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            arrived.cancel()
        return arrived.result() if arrived.done() and not arrived.cancelled() else None

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
