"""The greeter module: greets people and counts greetings per person."""

from __future__ import annotations

from collections import Counter
from typing import Any

import grpc
from pydantic import BaseModel, Field

import sdk
from greeter.v1 import greeter_pb2, greeter_pb2_grpc

# One context type for every method of the servicer, whose request and response types differ.
ServicerContext = grpc.aio.ServicerContext[Any, Any]


class GreeterConfig(BaseModel):
    """The greeter's configuration."""

    greeting: str = Field(default="Hello", min_length=1, description="the word to greet with")
    max_name_length: int = Field(default=64, gt=0, description="longer names are refused")


class Greeter(sdk.Module, greeter_pb2_grpc.GreeterServicer):
    """Serves greeter.v1.Greeter."""

    config_model = GreeterConfig

    async def initialize(self, ctx: sdk.Context[GreeterConfig]) -> None:
        self.config = ctx.config
        self.counts: Counter[str] = Counter()
        self.log = ctx.logger
        ctx.gauge("people_greeted", lambda: len(self.counts))
        self.greetings = ctx.counter("greetings_total")

    async def SayHello(
        self, request: greeter_pb2.SayHelloRequest, context: ServicerContext
    ) -> greeter_pb2.SayHelloResponse:
        name = request.name.strip()
        if not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is empty; say who to greet")
        if len(name) > self.config.max_name_length:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"name is {len(name)} characters; at most {self.config.max_name_length} are allowed",
            )
        self.counts[name] += 1
        self.greetings.add()
        return greeter_pb2.SayHelloResponse(message=f"{self.config.greeting}, {name}!", count=self.counts[name])

    async def GetGreetingCount(
        self, request: greeter_pb2.GetGreetingCountRequest, context: ServicerContext
    ) -> greeter_pb2.GetGreetingCountResponse:
        return greeter_pb2.GetGreetingCountResponse(count=self.counts[request.name.strip()])

    async def health(self) -> sdk.Health:
        return sdk.Health.of(sdk.ComponentHealth("greetings", message=f"{len(self.counts)} people"))
