"""Publish-to-handle throughput and latency through the SDK, against raw nats-py doing the
same in the same run, both delivery modes:

* ephemeral: SDK `ctx.publish(durable=False)` -> `@sdk.on(..., delivery=sdk.Ephemeral())` handler,
  against raw `nc.publish` -> subscription callback (core NATS);
* durable: SDK `ctx.publish()` (waits for the JetStream ack) -> durable handler (acked after
  it returns), against raw `js.publish` -> pull consumer fetch + ack, once with each publish's
  ack awaited (as the SDK does) and once with `js.publish_async` (acks awaited together at the
  end: nats-py's fastest way to store messages).

Publisher and handler share one process and one embedded nats-server; 20 publishing tasks
flat out (throughput, and latency that is mostly queueing), then one task publishing 1,000
events a second (latency of an event on a machine that is not saturated).

    python -m bench.events [--events 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast

import nats
from nats.aio.msg import Msg
from nats.js import api

import sdk
from bench import figures
from mesh.protocol.streams import ensure_streams
from mesh.v1 import lifecycle_pb2
from sdk.testing import EmbeddedNats, ModuleHarness

PUBLISHERS = 20

SINK = """
import time

from pydantic import BaseModel

import sdk


class Tick(BaseModel):
    n: int
    sent: float


class Sink(sdk.Module):
    event_models = {"bench.tick": Tick, "bench.stored": Tick}

    def __init__(self):
        self.latencies = []
        self.done = None

    async def initialize(self, ctx):
        self.ctx = ctx

    @sdk.on("bench.tick", delivery=sdk.Ephemeral())
    async def tick(self, tick: Tick) -> None:
        self.latencies.append(time.perf_counter() - tick.sent)

    @sdk.on("bench.stored", delivery=sdk.Durable(concurrency=64))
    async def stored(self, tick: Tick) -> None:
        self.latencies.append(time.perf_counter() - tick.sent)
"""


class Sink(Protocol):
    """What the benchmark reads of the SINK module (its class exists only once SINK is loaded)."""

    ctx: sdk.Context[Any]
    latencies: list[float]


def write_sink(root: Path) -> Path:
    folder = root / "sink"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "module.py").write_text(SINK)
    (folder / "module.toml").write_text(
        'name = "sink"\nversion = "1.0.0"\n[events]\npublishes = ["bench.tick", "bench.stored"]\n'
        'subscribes = ["bench.tick", "bench.stored"]\n[run]\nentry = "module:Sink"\n'
    )
    return folder


async def until(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.perf_counter() + seconds
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the events did not all arrive")
        await asyncio.sleep(0.001)


async def spread(count: int, publish: Callable[[int], Awaitable[object]], rate: float | None = None) -> None:
    """Publish `count` events: flat out from PUBLISHERS tasks, or from one task at `rate`
    events a second (each publish awaited, so a slow publish delays the next, as it would a
    real publisher)."""
    if rate:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for n in range(count):
            delay = began + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await publish(n)
        return

    async def worker(offset: int) -> None:
        for n in range(offset, count, PUBLISHERS):
            await publish(n)

    await asyncio.gather(*(worker(offset) for offset in range(PUBLISHERS)))


def summary(count: int, elapsed: float, latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    return (
        count / elapsed,
        ordered[len(ordered) // 2] * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


CE_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "0123456789abcdef0123456789abcdef",
    "ce-source": "mesh://sink",
    "ce-type": "bench.tick",
    "ce-time": "2026-11-22T01:00:00.000000+00:00",
    "content-type": "application/json",
    "Nats-Msg-Id": "0123456789abcdef0123456789abcdef",
}


async def raw_core(
    url: str, count: int, headers: dict[str, str] | None = None, rate: float | None = None
) -> tuple[float, float, float]:
    """Core NATS publish -> callback; with `headers`, the same CloudEvents headers the SDK
    sends; at `rate` events a second when given (see `spread`)."""
    client = await nats.connect(url)
    latencies: list[float] = []

    async def handle(message: Msg) -> None:
        latencies.append(time.perf_counter() - float(message.data))

    await client.subscribe("raw.tick", cb=handle)
    began = time.perf_counter()
    await spread(count, lambda n: client.publish("raw.tick", str(time.perf_counter()).encode(), headers=headers), rate)
    await until(lambda: len(latencies) >= count)
    elapsed = time.perf_counter() - began
    await client.close()
    return summary(count, elapsed, latencies)


async def raw_durable(
    url: str, count: int, round_: int, *, asynchronous: bool = False, rate: float | None = None
) -> tuple[float, float, float]:
    """JetStream publish -> pull consumer fetching 64 at a time and acking each.

    Args:
        asynchronous: Publish with `publish_async` (acks awaited together at the end, nats-py's
            fastest way to store messages) instead of awaiting each publish's ack.
        rate: Events a second, when given (see `spread`); each publish's ack is awaited.
    """
    client = await nats.connect(url)
    js = client.jetstream()
    name = f"raw{round_}{'a' if asynchronous else ''}{'p' if rate else ''}"
    stream = name.upper()
    await js.add_stream(api.StreamConfig(name=stream, subjects=[f"{name}.stored"]))
    subscription = await js.pull_subscribe(f"{name}.stored", durable="raw", stream=stream)
    latencies: list[float] = []

    async def consume() -> None:
        while len(latencies) < count:
            try:
                messages = await subscription.fetch(64, timeout=1)
            except TimeoutError:
                continue
            for message in messages:
                latencies.append(time.perf_counter() - float(message.data))
                await message.ack()

    consumer = asyncio.create_task(consume())
    began = time.perf_counter()
    if asynchronous:
        acks: list[asyncio.Future[api.PubAck]] = []

        async def publish(n: int) -> None:
            acks.append(await js.publish_async(f"{name}.stored", str(time.perf_counter()).encode()))

        await spread(count, publish)
        await asyncio.gather(*acks)  # every message stored, or the error that says why not
    else:
        await spread(count, lambda n: js.publish(f"{name}.stored", str(time.perf_counter()).encode()), rate)
    await consumer
    elapsed = time.perf_counter() - began
    await client.close()
    return summary(count, elapsed, latencies)


async def sdk_run(
    url: str,
    sink_dir: Path,
    count: int,
    event_type: str,
    adjust: Callable[[lifecycle_pb2.ModuleSettings], None] | None = None,
    rate: float | None = None,
) -> tuple[float, float, float]:
    """SDK publish -> handle of `count` events of `event_type` through the SINK module.

    Args:
        url: The NATS server.
        sink_dir: The SINK module's folder.
        count: How many events.
        event_type: bench.tick (ephemeral) or bench.stored (durable).
        adjust: Changes the ModuleSettings the harness sends at Initialize (a NATS login, a
            coordinator address), when given.
        rate: Events a second, when given (see `spread`).
    """
    async with ModuleHarness(sink_dir, nats=url, start=False) as harness:
        settings = harness.settings()
        if adjust is not None:
            adjust(settings)
        await harness.lifecycle.Initialize(lifecycle_pb2.InitializeRequest(settings=settings))
        await harness.start()
        sink = cast(Sink, harness.module)
        tick = type(harness.module).event_models[event_type]
        durable = event_type == "bench.stored"
        began = time.perf_counter()
        await spread(
            count,
            lambda n: sink.ctx.publish(event_type, tick(n=n, sent=time.perf_counter()), durable=durable),
            rate,
        )
        await until(lambda: len(sink.latencies) >= count)
        elapsed = time.perf_counter() - began
        return summary(count, elapsed, sink.latencies)


async def sdk_only(events: int, rounds: int) -> dict[str, float]:
    """Median SDK events/s of each mode (for bench.tracing, which runs this with and without OTel)."""
    from mesh.protocol.telemetry import configure_telemetry, shutdown_telemetry

    configure_telemetry(service_name="bench-events", service_version="0", instance_id="bench")
    rates: dict[str, list[float]] = {"ephemeral": [], "durable": []}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        sink_dir = write_sink(Path(scratch))
        async with EmbeddedNats(data_dir=Path(scratch) / "js") as server:
            for _ in range(rounds):
                rates["ephemeral"].append((await sdk_run(server.url, sink_dir, events, "bench.tick"))[0])
                rates["durable"].append((await sdk_run(server.url, sink_dir, events, "bench.stored"))[0])
    shutdown_telemetry()
    return {mode: statistics.median(values) for mode, values in rates.items()}


PACED_RATE = 1000.0
"""Events a second of the latency runs: a load this machine carries without queueing."""
PACED_EVENTS = 2000


async def main_async(events: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        sink_dir = write_sink(Path(scratch))
        results: dict[str, list[tuple[float, float, float]]] = {}
        paced: dict[str, list[tuple[float, float, float]]] = {}
        async with EmbeddedNats(data_dir=Path(scratch) / "js") as server:
            client = await nats.connect(server.url)
            await ensure_streams(client.jetstream())
            await client.close()
            for round_ in range(rounds):
                results.setdefault("raw ephemeral", []).append(await raw_core(server.url, events))
                results.setdefault("raw+ce headers", []).append(await raw_core(server.url, events, CE_HEADERS))
                results.setdefault("sdk ephemeral", []).append(
                    await sdk_run(server.url, sink_dir, events, "bench.tick")
                )
                results.setdefault("raw durable", []).append(await raw_durable(server.url, events, round_))
                results.setdefault("raw durable async", []).append(
                    await raw_durable(server.url, events, round_, asynchronous=True)
                )
                results.setdefault("sdk durable", []).append(
                    await sdk_run(server.url, sink_dir, events, "bench.stored")
                )
            for round_ in range(rounds):
                rate = PACED_RATE
                paced.setdefault("raw+ce headers", []).append(
                    await raw_core(server.url, PACED_EVENTS, CE_HEADERS, rate)
                )
                paced.setdefault("sdk ephemeral", []).append(
                    await sdk_run(server.url, sink_dir, PACED_EVENTS, "bench.tick", rate=rate)
                )
                paced.setdefault("raw durable", []).append(
                    await raw_durable(server.url, PACED_EVENTS, round_, rate=rate)
                )
                paced.setdefault("sdk durable", []).append(
                    await sdk_run(server.url, sink_dir, PACED_EVENTS, "bench.stored", rate=rate)
                )
    medians = {name: tuple(statistics.median(r[i] for r in runs) for i in range(3)) for name, runs in results.items()}
    print(f"publish -> handle, {events} events x {rounds} rounds, {PUBLISHERS} publishing tasks, one process")
    print(f"{'path':<18}{'events/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, (rate, p50, p99) in medians.items():
        print(f"{name:<18}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    for raw_name, ours_name in (
        ("raw ephemeral", "sdk ephemeral"),
        ("raw+ce headers", "sdk ephemeral"),
        ("raw durable", "sdk durable"),
        ("raw durable async", "sdk durable"),
    ):
        raw, ours = medians[raw_name], medians[ours_name]
        figures.record(f"{ours_name} / {raw_name} throughput", ours[0] / raw[0])
        figures.record(f"{ours_name} / {raw_name} p99", ours[2] / raw[2], better="lower")
        print(
            f"ratio {ours_name} / {raw_name}: throughput {ours[0] / raw[0]:.2f}, p50 {ours[1] / raw[1]:.2f}, "
            f"p99 {ours[2] / raw[2]:.2f}"
        )
    paced_medians = {
        name: tuple(statistics.median(r[i] for r in runs) for i in range(3)) for name, runs in paced.items()
    }
    print(f"\npaced: {PACED_EVENTS} events at {PACED_RATE:.0f} events/s x {rounds} rounds, one publishing task")
    print(f"{'path':<18}{'events/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, (rate, p50, p99) in paced_medians.items():
        print(f"{name:<18}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    for raw_name, ours_name in (("raw+ce headers", "sdk ephemeral"), ("raw durable", "sdk durable")):
        raw, ours = paced_medians[raw_name], paced_medians[ours_name]
        figures.record(f"paced {ours_name} / {raw_name} p99", ours[2] / raw[2], better="lower")
        print(f"ratio paced {ours_name} / {raw_name}: p50 {ours[1] / raw[1]:.2f}, p99 {ours[2] / raw[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sdk-only-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sdk_only_json:
        print(json.dumps(asyncio.run(sdk_only(args.events, args.rounds))))
        return
    asyncio.run(main_async(args.events, args.rounds))


if __name__ == "__main__":
    main()
