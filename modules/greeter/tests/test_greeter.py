"""The greeter module through sdk.testing: a real server, a real nats-server."""

import grpc
import pytest

from greeter.v1 import greeter_pb2, greeter_pb2_grpc

MODULE_DIR = "modules/greeter"


async def test_greets_and_counts_per_person(module_harness):
    async with module_harness(MODULE_DIR, config={"greeting": "Hi"}) as harness:
        greeter = harness.stub(greeter_pb2_grpc.GreeterStub)
        first = await greeter.SayHello(greeter_pb2.SayHelloRequest(name="Ada"))
        second = await greeter.SayHello(greeter_pb2.SayHelloRequest(name="Ada"))
        count = await greeter.GetGreetingCount(greeter_pb2.GetGreetingCountRequest(name="Ada"))
    assert first.message == "Hi, Ada!"
    assert (first.count, second.count, count.count) == (1, 2, 2)


async def test_refuses_an_empty_name(module_harness):
    async with module_harness(MODULE_DIR) as harness:
        greeter = harness.stub(greeter_pb2_grpc.GreeterStub)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await greeter.SayHello(greeter_pb2.SayHelloRequest(name="  "))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name is empty" in raised.value.details()
