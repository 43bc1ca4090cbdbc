"""The users module through sdk.testing."""

import grpc
import pytest

from users.v1 import users_pb2, users_pb2_grpc

MODULE = "modules/users"


async def test_creates_finds_and_lists_users(module_harness):
    async with module_harness(MODULE) as harness:
        users = harness.stub(users_pb2_grpc.UsersStub)
        ada = (await users.CreateUser(users_pb2.CreateUserRequest(name="Ada", email="ADA@example.org"))).user
        await users.CreateUser(users_pb2.CreateUserRequest(name="Grace", email="grace@example.org"))
        found = (await users.GetUser(users_pb2.GetUserRequest(id=ada.id))).user
        listed = (await users.ListUsers(users_pb2.ListUsersRequest())).users
    assert (found.name, found.email) == ("Ada", "ada@example.org")
    assert [user.name for user in listed] == ["Ada", "Grace"]


async def test_refuses_bad_and_duplicate_accounts(module_harness):
    async with module_harness(MODULE) as harness:
        users = harness.stub(users_pb2_grpc.UsersStub)
        await users.CreateUser(users_pb2.CreateUserRequest(name="Ada", email="ada@example.org"))
        for request, code in (
            (users_pb2.CreateUserRequest(name="Ada", email="ada@example.org"), grpc.StatusCode.ALREADY_EXISTS),
            (users_pb2.CreateUserRequest(name="", email="x@y"), grpc.StatusCode.INVALID_ARGUMENT),
            (users_pb2.CreateUserRequest(name="Bob", email="no-at-sign"), grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await users.CreateUser(request)
            assert raised.value.code() == code
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await users.GetUser(users_pb2.GetUserRequest(id="u-nobody"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
