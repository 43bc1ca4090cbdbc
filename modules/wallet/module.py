"""Credit balances per account, in SQLite; accounts are checked with the users module."""

from __future__ import annotations

from typing import Any

import grpc

import sdk
from users.v1 import users_pb2, users_pb2_grpc
from wallet.v1 import wallet_pb2, wallet_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS balances (
    tenant TEXT NOT NULL, user_id TEXT NOT NULL, balance INTEGER NOT NULL, PRIMARY KEY (tenant, user_id)
);
"""


class Wallet(sdk.Module, wallet_pb2_grpc.WalletServicer):
    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.users = ctx.client("users", users_pb2_grpc.UsersStub)
        self.db = await sdk.Database.open(ctx.state_dir / "wallet.db", schema=SCHEMA)

    async def stop(self) -> None:
        await self.db.close()

    async def _balance(self, tenant: str, user_id: str) -> int:
        rows = await self.db.query("SELECT balance FROM balances WHERE tenant = ? AND user_id = ?", (tenant, user_id))
        return rows[0]["balance"] if rows else 0

    async def _check(self, context: ServicerContext, user_id: str, amount: int) -> str:
        """The call's tenant, once the amount is positive and the user exists."""
        tenant = sdk.tenant_of(context)
        if amount <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"amount must be positive, got {amount}")
        try:
            await self.users.GetUser(users_pb2.GetUserRequest(id=user_id), metadata=sdk.tenant_metadata(tenant))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {user_id!r}")
            raise
        return tenant

    async def Deposit(self, request: wallet_pb2.DepositRequest, context: ServicerContext) -> wallet_pb2.DepositResponse:
        tenant = await self._check(context, request.user_id, request.amount)
        async with self.db.transaction() as tx:
            # Added in SQL, not read then written: concurrent deposits all count.
            await tx.execute(
                "INSERT INTO balances VALUES (?, ?, ?) "
                "ON CONFLICT (tenant, user_id) DO UPDATE SET balance = balance + excluded.balance",
                (tenant, request.user_id, request.amount),
            )
            balance = await self._balance_in(tx, tenant, request.user_id)
        return wallet_pb2.DepositResponse(balance=balance)

    async def Withdraw(
        self, request: wallet_pb2.WithdrawRequest, context: ServicerContext
    ) -> wallet_pb2.WithdrawResponse:
        tenant = await self._check(context, request.user_id, request.amount)
        async with self.db.transaction() as tx:
            # One conditional UPDATE: concurrent withdrawals can never overdraw the account.
            taken = await tx.execute(
                "UPDATE balances SET balance = balance - ? WHERE tenant = ? AND user_id = ? AND balance >= ?",
                (request.amount, tenant, request.user_id, request.amount),
            )
            balance = await self._balance_in(tx, tenant, request.user_id)
        if not taken:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"balance of {request.user_id} is {balance}, less than {request.amount}",
            )
        return wallet_pb2.WithdrawResponse(balance=balance)

    @staticmethod
    async def _balance_in(tx: sdk.Transaction, tenant: str, user_id: str) -> int:
        rows = await tx.query("SELECT balance FROM balances WHERE tenant = ? AND user_id = ?", (tenant, user_id))
        return int(rows[0]["balance"]) if rows else 0

    async def GetBalance(
        self, request: wallet_pb2.GetBalanceRequest, context: ServicerContext
    ) -> wallet_pb2.GetBalanceResponse:
        return wallet_pb2.GetBalanceResponse(balance=await self._balance(sdk.tenant_of(context), request.user_id))
