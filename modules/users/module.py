"""Accounts, per tenant, in SQLite; publishes `user.created` in the same transaction (through
the outbox)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import grpc

import sdk
from users.events import UserCreated
from users.v1 import users_pb2, users_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    tenant TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (tenant, id), UNIQUE (tenant, email)
);
"""


class Users(sdk.Module, users_pb2_grpc.UsersServicer):
    event_models: ClassVar = {"user.created": UserCreated}

    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.db = await ctx.database("users.db", schema=SCHEMA)

    async def stop(self) -> None:
        await self.db.close()

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: ServicerContext
    ) -> users_pb2.CreateUserResponse:
        tenant = sdk.tenant_of(context)
        name, email = request.name.strip(), request.email.strip().lower()
        if not name or "@" not in email:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a user needs a name and an email address with '@'")
        user = users_pb2.User(id=f"u-{uuid.uuid4().hex[:8]}", name=name, email=email)
        async with self.db.transaction() as tx:
            # INSERT OR IGNORE against UNIQUE (tenant, email): two concurrent sign-ups with one
            # email cannot both pass a check made before the insert.
            created = await tx.execute(
                "INSERT OR IGNORE INTO users VALUES (?, ?, ?, ?, julianday('now'))",
                (tenant, user.id, user.name, user.email),
            )
            if created:
                tx.publish(
                    "user.created",
                    UserCreated(user_id=user.id, name=name, email=email),
                    tenant=tenant or None,
                    subject=user.id,
                )
        if not created:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"the email {email} already has an account")
        return users_pb2.CreateUserResponse(user=user)

    async def GetUser(self, request: users_pb2.GetUserRequest, context: ServicerContext) -> users_pb2.GetUserResponse:
        rows = await self.db.query(
            "SELECT id, name, email FROM users WHERE tenant = ? AND id = ?", (sdk.tenant_of(context), request.id)
        )
        if not rows:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.id!r}")
        return users_pb2.GetUserResponse(user=users_pb2.User(**dict(rows[0])))

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: ServicerContext
    ) -> users_pb2.ListUsersResponse:
        rows = await self.db.query(
            "SELECT id, name, email FROM users WHERE tenant = ? ORDER BY created", (sdk.tenant_of(context),)
        )
        return users_pb2.ListUsersResponse(users=[users_pb2.User(**dict(row)) for row in rows])
