"""Payloads of the events the orders module publishes."""

from pydantic import BaseModel


class OrderCreated(BaseModel):
    order_id: str
    user_id: str
    sku: str
    quantity: int
