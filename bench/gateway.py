"""HTTP/JSON through the gateway against the same calls made directly over gRPC, in the same run:
the secured greeter module (mTLS, tokens verified, its tenant enabled through the tenancy
bucket on an embedded nats-server) as its own process, the gateway as its own process in front
of it (bearer tokens verified, rate limits shared through that nats-server as between replicas,
JSON transcoded, the call forwarded over mTLS), and this process
as the client of both: aiohttp for HTTP (a pool of `--concurrency` connections) and grpc.aio
for gRPC (one channel), `--concurrency` calls in flight. Rounds alternate between the two paths;
medians are reported, with the ratio of throughputs; and, one call at a time (no queueing),
the gateway's overhead at the median: p50 through the gateway minus p50 direct.

The benchmark has no coordinator: the gateway's module directory is given the module's
address instead of following WatchModules.

    python -m bench.gateway [--calls 4000] [--concurrency 50] [--single-calls 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import figures
from bench.identity import BenchIdentity, call_metadata, enable_tenant
from bench.rpc import PROJECT, cpu_seconds, load, quantile, start_module, timed_calls
from mesh.gateway.app import build_app
from mesh.gateway.directory import ModuleDirectory, Placement
from mesh.gateway.limit_plans import RateLimits
from mesh.gateway.limit_sharing import LimitSharing
from mesh.gateway.limits import RateLimit, RateLimiter
from mesh.gateway.metrics import GatewayMetrics
from mesh.gateway.settings import GatewaySettings, LimitsBus
from mesh.protocol.nats_server import EmbeddedNats
from mesh.protocol.tokens import VERIFICATION_KEYS_FILE, TokenVerifier
from mesh.protocol.transport import Transport
from mesh.v1 import module_pb2

MODULE = "greeter"
BODY = json.dumps({"name": "bench"})


class FixedModules(ModuleDirectory):
    """The gateway's directory with one module at a known address (no coordinator here)."""

    def __init__(self, module: str, address: str, transport: Transport) -> None:
        super().__init__("", transport)
        self._fixed = {module: Placement(address, module_pb2.MODULE_STATE_RUNNING)}

    def placement(self, module: str) -> Placement | None:
        return self._fixed.get(module)

    def names(self) -> list[str]:
        return sorted(self._fixed)


async def serve_gateway(address: str, credentials: Path, token_keys: Path, nats_url: str) -> None:
    """The gateway in front of the module at `address`, calling it with `credentials` and
    sharing its rate limits through `nats_url`; prints its port, then serves until stdin closes."""
    directory = FixedModules(MODULE, address, Transport(credentials))
    # The rate limiter on and shared, with a limit no load here reaches: its cost is measured, not its refusals.
    settings = GatewaySettings(
        TokenVerifier.with_keys(token_keys, {}), rate_limits=RateLimits.uniform(RateLimit(1e9, 10**9))
    )
    metrics = GatewayMetrics()
    limiter = RateLimiter(settings.rate_limits, shared=True)
    sharing = LimitSharing(limiter, LimitsBus((nats_url,)), metrics)
    sharing.start()
    runner = web.AppRunner(build_app(directory, settings, limiter, metrics))
    await runner.setup()
    listening = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, listening).start()
    print(json.dumps({"port": listening.getsockname()[1]}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await runner.cleanup()
    await sharing.stop()
    await directory.close()


def start_gateway(
    address: str, credentials: Path, token_keys: Path, nats_url: str
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.gateway",
            "--serve-gateway",
            address,
            "--credentials",
            str(credentials),
            "--token-keys",
            str(token_keys),
            "--nats-url",
            nats_url,
        ],
        cwd=PROJECT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, f"http://127.0.0.1:{json.loads(process.stdout.readline())['port']}"


async def load_http(url: str, calls: int, concurrency: int, token: str) -> tuple[float, list[float]]:
    """`calls` POSTs of SayHello over `concurrency` workers; returns (calls/s, latencies ms)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    target = f"{url}/api/v1/{MODULE}/SayHello"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def post() -> None:
            async with session.post(target, data=BODY, headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"the gateway answered {answer.status}: {await answer.text()}")

        return await timed_calls(post, calls, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--single-calls", type=int, default=500, help="calls made one at a time, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-gateway", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--credentials", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--token-keys", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.calls, args.concurrency, args.rounds, args.single_calls) < 1:
        parser.error("--calls, --concurrency, --single-calls and --rounds must each be at least 1")
    if args.serve_gateway:
        asyncio.run(serve_gateway(args.serve_gateway, args.credentials, args.token_keys, args.nats_url))
        return
    rounds: dict[str, list[tuple[float, float, float, float]]] = {"direct gRPC": [], "gateway": []}
    single: dict[str, list[float]] = {"direct gRPC": [], "gateway": []}
    with tempfile.TemporaryDirectory() as scratch_name, EmbeddedNats() as nats_server:
        scratch = Path(scratch_name)
        identity = BenchIdentity.issue(scratch / "pki", MODULE)
        identity.operator.write(scratch / "operator")
        asyncio.run(enable_tenant(nats_server.url, MODULE))
        (scratch / "module").mkdir()
        module, address = start_module(scratch / "module", identity=identity, nats_url=nats_server.url)
        gateway, url = start_gateway(
            address, scratch / "operator", identity.module_dir / VERIFICATION_KEYS_FILE, nats_server.url
        )
        try:
            client_tls, metadata = identity.operator.channel_credentials(), call_metadata(identity.token)
            for _ in range(args.rounds):
                began = cpu_seconds(gateway)
                rate, latencies = asyncio.run(load_http(url, args.calls, args.concurrency, identity.token))
                cpu = (cpu_seconds(gateway) - began) / args.calls * 1e6
                rounds["gateway"].append((rate, quantile(latencies, 0.5), quantile(latencies, 0.99), cpu))
                rate, latencies = asyncio.run(load(address, args.calls, args.concurrency, client_tls, metadata))
                rounds["direct gRPC"].append((rate, quantile(latencies, 0.5), quantile(latencies, 0.99), 0.0))
                _rate, latencies = asyncio.run(load_http(url, args.single_calls, 1, identity.token))
                single["gateway"].append(quantile(latencies, 0.5))
                _rate, latencies = asyncio.run(load(address, args.single_calls, 1, client_tls, metadata))
                single["direct gRPC"].append(quantile(latencies, 0.5))
        finally:
            assert gateway.stdin is not None
            gateway.stdin.close()
            gateway.wait(timeout=30)
            module.terminate()
            module.wait(timeout=30)
    summary = {name: tuple(statistics.median(r[i] for r in runs) for i in range(4)) for name, runs in rounds.items()}
    print(
        f"unary SayHello, {args.calls} calls x {args.rounds} rounds, {args.concurrency} concurrent; "
        "module secured (mTLS, tokens), gateway verifying tokens and sharing its rate limits through NATS; "
        "client in its own process"
    )
    print(f"{'path':<14}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'gateway CPU µs/call':>22}")
    for name, (rate, p50, p99, cpu) in summary.items():
        print(f"{name:<14}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}{(f'{cpu:.0f}' if cpu else '-'):>22}")
    gateway_figures, direct = summary["gateway"], summary["direct gRPC"]
    throughput = gateway_figures[0] / direct[0]
    alone = {name: statistics.median(values) for name, values in single.items()}
    overhead = alone["gateway"] - alone["direct gRPC"]
    print(
        f"one call at a time, {args.single_calls} calls x {args.rounds} rounds: p50 {alone['direct gRPC']:.2f} ms "
        f"direct, {alone['gateway']:.2f} ms through the gateway"
    )
    print(
        f"ratio gateway / direct gRPC: throughput {throughput:.2f}, p50 {gateway_figures[1] / direct[1]:.2f}, "
        f"p99 {gateway_figures[2] / direct[2]:.2f}; p50 overhead one call at a time {overhead:.2f} ms"
    )
    figures.record("gateway / direct gRPC throughput", throughput)
    figures.record("gateway p50 overhead ms", overhead, better="lower")
    figures.record("gateway / direct gRPC p99", gateway_figures[2] / direct[2], better="lower")


if __name__ == "__main__":
    main()
