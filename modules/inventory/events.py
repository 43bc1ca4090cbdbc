"""Payloads of the events the inventory module publishes."""

from pydantic import BaseModel


class InventoryUpdated(BaseModel):
    sku: str
    quantity: int
