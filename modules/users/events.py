"""Payloads of the events the users module publishes."""

from pydantic import BaseModel


class UserCreated(BaseModel):
    user_id: str
    name: str
    email: str
