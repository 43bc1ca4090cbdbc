"""Payloads of the events the transactions module publishes."""

from pydantic import BaseModel


class TransactionCompleted(BaseModel):
    transaction_id: str
    from_user_id: str
    to_user_id: str
    amount: int
