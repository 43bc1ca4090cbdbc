"""The performance goals of the performance, identity and gateway issues, as figures of `make bench`:
docs/benchmarks.md shows each beside what the last recorded run measured."""

from __future__ import annotations

from dataclasses import dataclass

from bench.figures import Figure


@dataclass(frozen=True)
class Goal:
    """One goal: a figure of one benchmark at least (or at most) a bound.

    Attributes:
        what: The goal in words.
        benchmark: The benchmark whose figure it is; "" when no benchmark measures it yet.
        figure: The figure's name, as the benchmark records it.
        bound: The bound the figure must reach.
    """

    what: str
    benchmark: str
    figure: str
    bound: float

    def met_by(self, figure: Figure) -> bool:
        return figure.value >= self.bound if figure.better == "higher" else figure.value <= self.bound


GOALS = (
    Goal(
        "SDK ephemeral events / raw nats-py with the same CloudEvents headers",
        "events",
        "sdk ephemeral / raw+ce headers throughput",
        0.8,
    ),
    Goal(
        "SDK durable events / raw JetStream publish + pull consumer",
        "events",
        "sdk durable / raw durable async throughput",
        0.8,
    ),
    Goal(
        "p99 latency of SDK ephemeral events at 1,000 events/s / raw nats-py with the same headers",
        "events",
        "paced sdk ephemeral / raw+ce headers p99",
        2.0,
    ),
    Goal(
        "p99 latency of SDK durable events at 1,000 events/s / raw JetStream",
        "events",
        "paced sdk durable / raw durable p99",
        2.0,
    ),
    Goal("boot of 20 modules in 5 levels / the ideal", "boot", "20 modules / ideal boot time", 1.25),
    Goal("boot of 40 modules in 5 levels / the ideal", "boot", "40 modules / ideal boot time", 1.5),
    Goal("unary RPC through an SDK module / raw grpc.aio, plaintext", "rpc", "sdk / plain throughput", 0.95),
    Goal(
        "unary RPC through an SDK module with mTLS and tokens / raw grpc.aio with the same mTLS",
        "rpc",
        "sdk mTLS+token / plain mTLS throughput",
        0.9,
    ),
    Goal("RPC with tracing always on / off", "tracing", "rpc tracing on / off throughput", 0.7),
    Goal(
        "ephemeral events with tracing always on / off", "tracing", "ephemeral events tracing on / off throughput", 0.6
    ),
    Goal("durable events with tracing always on / off", "tracing", "durable events tracing on / off throughput", 0.6),
    Goal("idle module process RSS, MiB", "rpc", "sdk idle RSS MiB", 60.0),
    Goal("HTTP/JSON through the gateway / direct gRPC, throughput", "gateway", "gateway / direct gRPC throughput", 0.5),
    Goal("the gateway's overhead at the median, one call at a time, ms", "gateway", "gateway p50 overhead ms", 1.0),
)
