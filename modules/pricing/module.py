"""Quotes orders from `order.created` events with each tenant's prices and currency."""

from __future__ import annotations

from typing import Any

import grpc
from pydantic import BaseModel, Field

import sdk
from orders.events import OrderCreated
from pricing.v1 import pricing_pb2, pricing_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS quotes (
    tenant TEXT NOT NULL, order_id TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
    PRIMARY KEY (tenant, order_id)
);
"""


class PricingConfig(BaseModel):
    """Prices; a tenant or company overrides them with `mesh config set pricing <tenant> ...`."""

    currency: str = Field(default="USD", pattern="^[A-Z]{3}$")
    unit_price: int = Field(default=1000, ge=0, description="per unit, in minor units of the currency")
    markup_percent: float = Field(default=0.0, ge=0, le=100)


class Pricing(sdk.Module, pricing_pb2_grpc.PricingServicer):
    config_model = PricingConfig

    async def initialize(self, ctx: sdk.Context[PricingConfig]) -> None:
        self.ctx = ctx
        self.db = await sdk.Database.open(ctx.state_dir / "pricing.db", schema=SCHEMA)
        self.quotes = ctx.counter("quotes_total")

    async def stop(self) -> None:
        await self.db.close()

    def _config(self, tenant: str) -> PricingConfig:
        return self.ctx.tenants.config_for(tenant) if tenant else self.ctx.config

    @sdk.on("order.created")
    async def quote(self, event: sdk.Event[OrderCreated]) -> None:
        config = self._config(event.tenant)
        amount = round(event.data.quantity * config.unit_price * (1 + config.markup_percent / 100))
        await self.db.execute(
            "INSERT OR REPLACE INTO quotes VALUES (?, ?, ?, ?)",
            (event.tenant, event.data.order_id, amount, config.currency),
        )
        self.quotes.add()

    async def GetQuote(
        self, request: pricing_pb2.GetQuoteRequest, context: ServicerContext
    ) -> pricing_pb2.GetQuoteResponse:
        rows = await self.db.query(
            "SELECT order_id, amount, currency FROM quotes WHERE tenant = ? AND order_id = ?",
            (sdk.tenant_of(context), request.order_id),
        )
        if not rows:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no quote for order {request.order_id!r} (yet)")
        return pricing_pb2.GetQuoteResponse(**dict(rows[0]))
