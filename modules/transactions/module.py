"""Transfers through the wallet, recorded in SQLite; publishes `transaction.completed` in the
same transaction (through the outbox)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import grpc

import sdk
from transactions.events import TransactionCompleted
from transactions.v1 import transactions_pb2, transactions_pb2_grpc
from wallet.v1 import wallet_pb2, wallet_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    tenant TEXT NOT NULL, id TEXT NOT NULL, from_user_id TEXT NOT NULL, to_user_id TEXT NOT NULL,
    amount INTEGER NOT NULL, created REAL NOT NULL, PRIMARY KEY (tenant, id)
);
"""


class Transactions(sdk.Module, transactions_pb2_grpc.TransactionsServicer):
    event_models: ClassVar = {"transaction.completed": TransactionCompleted}

    async def initialize(self, ctx: sdk.Context[sdk.NoConfig]) -> None:
        self.wallet = ctx.client("wallet", wallet_pb2_grpc.WalletStub)
        self.db = await ctx.database("transactions.db", schema=SCHEMA)

    async def stop(self) -> None:
        await self.db.close()

    async def Transfer(
        self, request: transactions_pb2.TransferRequest, context: ServicerContext
    ) -> transactions_pb2.TransferResponse:
        tenant = sdk.tenant_of(context)
        if request.amount <= 0 or request.from_user_id == request.to_user_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "a transfer needs a positive amount between two accounts"
            )
        metadata = sdk.tenant_metadata(tenant)
        try:
            await self.wallet.Withdraw(
                wallet_pb2.WithdrawRequest(user_id=request.from_user_id, amount=request.amount), metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            await context.abort(
                error.code(), f"cannot take {request.amount} from {request.from_user_id}: {error.details()}"
            )
        try:
            await self.wallet.Deposit(
                wallet_pb2.DepositRequest(user_id=request.to_user_id, amount=request.amount), metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            # Give the money back: a transfer is all or nothing.
            await self.wallet.Deposit(
                wallet_pb2.DepositRequest(user_id=request.from_user_id, amount=request.amount), metadata=metadata
            )
            await context.abort(error.code(), f"cannot pay {request.to_user_id}: {error.details()}; nothing was moved")
        transaction = transactions_pb2.Transaction(
            id=f"t-{uuid.uuid4().hex[:8]}",
            from_user_id=request.from_user_id,
            to_user_id=request.to_user_id,
            amount=request.amount,
        )
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, julianday('now'))",
                (tenant, transaction.id, transaction.from_user_id, transaction.to_user_id, transaction.amount),
            )
            tx.publish(
                "transaction.completed",
                TransactionCompleted(
                    transaction_id=transaction.id,
                    from_user_id=transaction.from_user_id,
                    to_user_id=transaction.to_user_id,
                    amount=transaction.amount,
                ),
                tenant=tenant or None,
                subject=transaction.id,
            )
        return transactions_pb2.TransferResponse(transaction=transaction)

    async def ListTransactions(
        self, request: transactions_pb2.ListTransactionsRequest, context: ServicerContext
    ) -> transactions_pb2.ListTransactionsResponse:
        rows = await self.db.query(
            "SELECT id, from_user_id, to_user_id, amount FROM transfers WHERE tenant = ? ORDER BY created DESC",
            (sdk.tenant_of(context),),
        )
        return transactions_pb2.ListTransactionsResponse(
            transactions=[transactions_pb2.Transaction(**dict(r)) for r in rows]
        )
