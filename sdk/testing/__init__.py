"""Testing tiers for module authors (Nameko's `worker_factory` / `entrypoint_waiter` are the
model), each a few lines in a pytest test:

- `ModuleHarness`: the module served in-process on a free port with a real embedded
  nats-server, its lifecycle at hand, stubs ready; `harness.publish(...)` delivers an event
  to it and returns once its handler is done; `stand_ins={"orders": [FakeOrders()]}` serves
  fakes where a dependency would be.
- `UnitModule`: the module instance initialized in-process with no server and no NATS,
  its dependencies given by the test, its publishes recorded; methods called directly.
- `eventually(condition, what)`: wait for an asynchronous effect, with a deadline.
- `EmbeddedNats`: a real nats-server for a test.

    from sdk.testing import ModuleHarness
    from greeter.v1 import greeter_pb2, greeter_pb2_grpc

    async def test_greets():
        async with ModuleHarness("modules/greeter", config={"greeting": "Hi"}) as harness:
            greeter = harness.stub(greeter_pb2_grpc.GreeterStub)
            reply = await greeter.SayHello(greeter_pb2.SayHelloRequest(name="Ada"))
            assert reply.message == "Hi, Ada!"

With pytest, the `module_harness` fixture (from the plugin `sdk.pytest_plugin`, loaded
automatically) builds harnesses that share one nats-server per test session.
"""

from mesh.protocol.nats_server import EmbeddedNats
from sdk.events import Outcome, Verdict
from sdk.testing._harness import ModuleHarness
from sdk.testing._unit import Aborted, CallContext, PublishedEvent, UnitModule
from sdk.testing._waiting import WAIT_SECONDS, eventually

__all__ = [
    # tiers
    "ModuleHarness",
    "UnitModule",
    "eventually",
    "EmbeddedNats",
    # what they hand back
    "Aborted",
    "CallContext",
    "Outcome",
    "PublishedEvent",
    "Verdict",
    "WAIT_SECONDS",
]
