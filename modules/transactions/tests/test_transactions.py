"""The transactions module through sdk.testing, with the real users and wallet modules."""

import grpc
import pytest

from transactions.v1 import transactions_pb2, transactions_pb2_grpc
from users.v1 import users_pb2, users_pb2_grpc
from wallet.v1 import wallet_pb2, wallet_pb2_grpc


async def test_transfers_all_or_nothing(module_harness):
    async with (
        module_harness("modules/users") as users,
        module_harness("modules/wallet", dependencies={"users": users.address}) as wallet,
        module_harness(
            "modules/transactions", dependencies={"users": users.address, "wallet": wallet.address}
        ) as transactions,
    ):
        create = users.stub(users_pb2_grpc.UsersStub).CreateUser
        ada = (await create(users_pb2.CreateUserRequest(name="Ada", email="ada@example.org"))).user
        bob = (await create(users_pb2.CreateUserRequest(name="Bob", email="bob@example.org"))).user
        balances = wallet.stub(wallet_pb2_grpc.WalletStub)
        await balances.Deposit(wallet_pb2.DepositRequest(user_id=ada.id, amount=50))
        stub = transactions.stub(transactions_pb2_grpc.TransactionsStub)
        done = (
            await stub.Transfer(transactions_pb2.TransferRequest(from_user_id=ada.id, to_user_id=bob.id, amount=20))
        ).transaction
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Transfer(transactions_pb2.TransferRequest(from_user_id=ada.id, to_user_id="u-ghost", amount=10))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        after = [(await balances.GetBalance(wallet_pb2.GetBalanceRequest(user_id=u.id))).balance for u in (ada, bob)]
        listed = (await stub.ListTransactions(transactions_pb2.ListTransactionsRequest())).transactions
    assert after == [30, 20]
    assert [t.id for t in listed] == [done.id]
