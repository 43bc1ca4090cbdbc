"""The wallet module through sdk.testing, with the real users module as its dependency."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from users.v1 import users_pb2, users_pb2_grpc
from wallet.v1 import wallet_pb2, wallet_pb2_grpc


@asynccontextmanager
async def wallet_of_ada(module_harness) -> AsyncIterator[tuple[wallet_pb2_grpc.WalletStub, str]]:
    """The wallet served beside the real users module, and the id of a user created there."""
    async with (
        module_harness("modules/users") as users,
        module_harness("modules/wallet", dependencies={"users": users.address}) as wallet,
    ):
        ada = (
            await users.stub(users_pb2_grpc.UsersStub).CreateUser(
                users_pb2.CreateUserRequest(name="Ada", email="ada@example.org")
            )
        ).user
        yield wallet.stub(wallet_pb2_grpc.WalletStub), ada.id


async def test_deposits_and_withdraws_for_known_users(module_harness):
    async with wallet_of_ada(module_harness) as (stub, ada):
        assert (await stub.Deposit(wallet_pb2.DepositRequest(user_id=ada, amount=100))).balance == 100
        assert (await stub.Withdraw(wallet_pb2.WithdrawRequest(user_id=ada, amount=30))).balance == 70
        with pytest.raises(grpc.aio.AioRpcError) as overdrawn:
            await stub.Withdraw(wallet_pb2.WithdrawRequest(user_id=ada, amount=71))
        assert overdrawn.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Deposit(wallet_pb2.DepositRequest(user_id="u-nobody", amount=5))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await stub.GetBalance(wallet_pb2.GetBalanceRequest(user_id=ada))).balance == 70


async def test_concurrent_withdrawals_never_overdraw(module_harness):
    async with wallet_of_ada(module_harness) as (stub, ada):
        await asyncio.gather(*(stub.Deposit(wallet_pb2.DepositRequest(user_id=ada, amount=1)) for _ in range(20)))

        async def withdraw() -> grpc.StatusCode:
            try:
                await stub.Withdraw(wallet_pb2.WithdrawRequest(user_id=ada, amount=1))
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(withdraw() for _ in range(50)))
        assert codes.count(grpc.StatusCode.OK) == 20
        assert (await stub.GetBalance(wallet_pb2.GetBalanceRequest(user_id=ada))).balance == 0
