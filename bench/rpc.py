"""Unary RPC through an SDK module against a plain grpc.aio server with the same servicer.

Both servers run as their own processes; this process is the client. Rounds alternate
between the two so that machine noise hits both alike; the medians are reported with
their ratio. Also reported: the resident memory of each idle server process.

    python -m bench.rpc [--calls 6000] [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
import psutil

from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc

PROJECT = Path(__file__).resolve().parent.parent
GREETER = PROJECT / "modules" / "greeter"


async def serve_plain() -> None:
    """The baseline: the greeter's own servicer code on a bare grpc.aio server."""
    import sdk
    from greeter.module import Greeter, GreeterConfig

    servicer = Greeter()
    servicer.config = GreeterConfig()
    servicer.counts = Counter()
    servicer.greetings = sdk.Counter()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    greeter_pb2_grpc.add_GreeterServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
    await server.wait_for_termination()


def start_plain() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.rpc", "--serve-plain"],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())["address"]


def start_module(scratch: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """The greeter module as its own process, initialized and started; `env` adds variables."""
    ready = scratch / "ready.json"
    ready.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "sdk.run", str(GREETER)],
        cwd=PROJECT,
        # Plaintext, like the baseline server: this compares the SDK's own cost, not TLS's.
        env={
            **os.environ,
            "MESH_READY_FILE": str(ready),
            "MESH_LOG_LEVEL": "WARNING",
            "MESH_INSECURE": "1",
            **(env or {}),
        },
        text=True,
    )
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError("the module process exited at start")
        time.sleep(0.02)
    address = json.loads(ready.read_text())["address"]

    async def bring_up() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
            await lifecycle.Initialize(lifecycle_pb2.InitializeRequest())
            await lifecycle.Start(lifecycle_pb2.StartRequest())

    asyncio.run(bring_up())
    return process, address


async def load(address: str, calls: int, concurrency: int) -> tuple[float, list[float]]:
    """`calls` SayHello calls over `concurrency` workers; returns (calls/s, latencies ms)."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
        request = greeter_pb2.SayHelloRequest(name="bench")
        await stub.SayHello(request)  # connect before timing
        remaining = calls

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                began = time.perf_counter()
                await stub.SayHello(request)
                latencies.append((time.perf_counter() - began) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return calls / elapsed, latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def idle_rss_mib(pid: int) -> float:
    time.sleep(1.0)
    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_plain:
        asyncio.run(serve_plain())
        return
    with tempfile.TemporaryDirectory() as scratch:
        plain, plain_address = start_plain()
        module, module_address = start_module(Path(scratch))
        try:
            rss = {"plain": idle_rss_mib(plain.pid), "sdk": idle_rss_mib(module.pid)}
            results: dict[str, list[tuple[float, float, float]]] = {"plain": [], "sdk": []}
            for _ in range(args.rounds):
                for name, address in (("plain", plain_address), ("sdk", module_address)):
                    rate, latencies = asyncio.run(load(address, args.calls, args.concurrency))
                    results[name].append((rate, quantile(latencies, 0.5), quantile(latencies, 0.99)))
        finally:
            for process in (plain, module):
                process.terminate()
                process.wait(timeout=30)
    summary = {
        name: tuple(statistics.median(run[i] for run in runs) for i in range(3)) for name, runs in results.items()
    }
    print(
        f"unary SayHello, {args.calls} calls x {args.rounds} rounds, "
        f"{args.concurrency} concurrent, client in its own process"
    )
    print(f"{'server':<8}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'idle RSS MiB':>14}")
    for name, (rate, p50, p99) in summary.items():
        print(f"{name:<8}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}{rss[name]:>14.1f}")
    plain_rate, plain_p50, plain_p99 = summary["plain"]
    sdk_rate, sdk_p50, sdk_p99 = summary["sdk"]
    print(
        f"ratio sdk/plain: throughput {sdk_rate / plain_rate:.2f}, p50 {sdk_p50 / plain_p50:.2f}, "
        f"p99 {sdk_p99 / plain_p99:.2f}, idle RSS {rss['sdk'] / rss['plain']:.2f}"
    )


if __name__ == "__main__":
    main()
