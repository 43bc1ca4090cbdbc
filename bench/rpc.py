"""Unary RPC through an SDK module against a raw grpc.aio server with the same servicer, as
two pairs in the same run:

* plaintext: the module with MESH_INSECURE=1 against an insecure raw server, the record of
  the SDK's own cost;
* secured: the module as a mesh serves it, over mTLS with a module certificate, verifying
  every call's bearer token and checking its tenant (enabled through the tenancy bucket on
  an embedded nats-server), against a raw server with the same TLS (the same certificate, a
  client certificate required). Both get the same client certificate (an operator's) and the
  same metadata (`authorization: Bearer <token>`, `x-tenant-id`).

Every server runs as its own process; this process is the client, one channel per server,
`--concurrency` calls in flight. Rounds alternate between the servers so that machine noise
hits all alike; the medians are reported with their ratios, with each server process's CPU
time per call (steadier than throughput where other work shares the cores) and its resident
memory when idle (RSS, and PSS: the libraries all these processes map are shared among
them). Before timing, the secured module must refuse a token signed by a key it does not
trust and one of a tenant it is not enabled for, which shows the timed calls go through the
verification.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil

from bench import figures
from bench.identity import STRANGER, BenchIdentity, call_metadata, enable_tenant
from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.protocol.errors import error_info
from mesh.protocol.nats_server import EmbeddedNats
from mesh.protocol.pki import Credentials
from mesh.protocol.transport import INSECURE_ENV, TLS_DIR_ENV
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc

PROJECT = Path(__file__).resolve().parent.parent
GREETER = PROJECT / "modules" / "greeter"
MODULE = "greeter"

Metadata = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Target:
    """One server under load, and how the client calls it."""

    name: str
    process: subprocess.Popen[str]
    address: str
    credentials: grpc.ChannelCredentials | None = None
    metadata: Metadata = ()


async def serve_plain(tls_dir: Path | None) -> None:
    """The baseline: the greeter's own servicer code on a bare grpc.aio server, over mTLS with
    the credentials in `tls_dir` (a client certificate required) or plaintext."""
    import sdk
    from greeter.module import Greeter, GreeterConfig

    servicer = Greeter()
    servicer.config = GreeterConfig()
    servicer.counts = Counter()
    servicer.greetings = sdk.Counter()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    greeter_pb2_grpc.add_GreeterServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
    if tls_dir is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", Credentials.read(tls_dir).server_credentials())
    await server.start()
    print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
    await server.wait_for_termination()


def start_plain(tls_dir: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """The baseline server as its own process; with `tls_dir`, over mTLS with those credentials."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.rpc", "--serve-plain", *(["--tls-dir", str(tls_dir)] if tls_dir else [])],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())["address"]


def start_module(
    scratch: Path,
    env: dict[str, str] | None = None,
    *,
    identity: BenchIdentity | None = None,
    nats_url: str = "",
) -> tuple[subprocess.Popen[str], str]:
    """The greeter module as its own process, initialized and started.

    Args:
        scratch: A folder of this module's own (its ready file goes there).
        env: More environment variables.
        identity: Serve over mTLS with the module's credentials and verify tokens, brought up
            by the coordinator's identity; None: plaintext (MESH_INSECURE=1).
        nats_url: The NATS given at Initialize (tenancy); none if empty.
    """
    ready = scratch / "ready.json"
    ready.unlink(missing_ok=True)
    transport = {TLS_DIR_ENV: str(identity.module_dir)} if identity else {INSECURE_ENV: "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sdk.run", str(GREETER)],
        cwd=PROJECT,
        env={**os.environ, "MESH_READY_FILE": str(ready), "MESH_LOG_LEVEL": "WARNING", **transport, **(env or {})},
        text=True,
    )
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError("the module process exited at start")
        time.sleep(0.02)
    address = json.loads(ready.read_text())["address"]
    settings = lifecycle_pb2.ModuleSettings(nats=lifecycle_pb2.NatsSettings(servers=[nats_url] if nats_url else []))

    async def bring_up() -> None:
        channel = (
            grpc.aio.secure_channel(address, identity.coordinator.channel_credentials())
            if identity
            else grpc.aio.insecure_channel(address)
        )
        async with channel:
            lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
            await lifecycle.Initialize(lifecycle_pb2.InitializeRequest(settings=settings))
            await lifecycle.Start(lifecycle_pb2.StartRequest())

    asyncio.run(bring_up())
    return process, address


def _channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, credentials)


async def load(
    address: str,
    calls: int,
    concurrency: int,
    credentials: grpc.ChannelCredentials | None = None,
    metadata: Metadata = (),
) -> tuple[float, list[float]]:
    """`calls` SayHello calls over `concurrency` workers on one channel; returns (calls/s, latencies ms).

    Args:
        address: The server's "host:port".
        calls: How many calls in all.
        concurrency: How many in flight at once.
        credentials: TLS for the channel; plaintext if None.
        metadata: What every call carries.
    """
    async with _channel(address, credentials) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
        request = greeter_pb2.SayHelloRequest(name="bench")
        return await timed_calls(lambda: stub.SayHello(request, metadata=metadata), calls, concurrency)


async def timed_calls(call: Callable[[], Awaitable[object]], calls: int, concurrency: int) -> tuple[float, list[float]]:
    """`calls` awaits of `call()` over `concurrency` workers, after one untimed (it connects,
    and hand-shakes); returns (calls/s, latencies ms)."""
    await call()
    latencies: list[float] = []
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - began), latencies


async def refusals(address: str, identity: BenchIdentity) -> dict[str, str]:
    """The reasons the secured module refuses a token of an untrusted key and one of a tenant
    it is not enabled for, once a valid token was served.

    Raises:
        RuntimeError: either was served, or refused for another reason: then the timed calls
            would not measure the verification.
    """
    expected = {
        "untrusted key": (call_metadata(identity.forged_token), "UNAUTHENTICATED"),
        "tenant not enabled": (call_metadata(identity.stranger_token, STRANGER), "MODULE_DISABLED_FOR_TENANT"),
    }
    found: dict[str, str] = {}
    async with _channel(address, identity.operator.channel_credentials()) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
        request = greeter_pb2.SayHelloRequest(name="bench")
        await stub.SayHello(request, metadata=call_metadata(identity.token))
        for case, (metadata, reason) in expected.items():
            try:
                await stub.SayHello(request, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                info = error_info(error)
                found[case] = info.reason if info is not None else error.code().name
            else:
                found[case] = "served"
            if found[case] != reason:
                raise RuntimeError(f"a call with a token ({case}) got {found[case]}, not {reason}")
    return found


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def idle_pss_mib(pid: int) -> float:
    """The process's proportional set size: its private pages plus its share of the pages it
    shares with other processes (the libraries every module process maps), in MiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/smaps_rollup has no Pss line")


def idle_rss_mib(pid: int) -> float:
    time.sleep(1.0)
    return psutil.Process(pid).memory_info().rss / 2**20


def cpu_seconds(process: subprocess.Popen[str]) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


Round = tuple[float, float, float, float]
"""One round's calls/s, p50 ms, p99 ms and server CPU µs per call."""


def measure(targets: list[Target], args: argparse.Namespace) -> dict[str, list[Round]]:
    """Alternating rounds over the targets; each round's figures of each. The server's CPU
    time per call is the steadier figure on a shared machine: other work there slows the
    calls down, it hardly changes what each one costs."""
    results: dict[str, list[tuple[float, float, float, float]]] = {target.name: [] for target in targets}
    for _ in range(args.rounds):
        for target in targets:
            before = cpu_seconds(target.process)
            rate, latencies = asyncio.run(
                load(target.address, args.calls, args.concurrency, target.credentials, target.metadata)
            )
            cpu_per_call = (cpu_seconds(target.process) - before) / (args.calls + 1) * 1e6
            results[target.name].append((rate, quantile(latencies, 0.5), quantile(latencies, 0.99), cpu_per_call))
    return results


def start_targets(scratch: Path, identity: BenchIdentity, nats_url: str, targets: list[Target]) -> dict[str, str]:
    """Start the four servers into `targets` (appended as each starts, so that the caller
    stops whatever started); returns why the secured module refused the two bad tokens."""
    client_tls, metadata = identity.operator.channel_credentials(), call_metadata(identity.token)
    targets.append(Target("plain", *start_plain()))
    targets.append(Target("sdk", *start_module(scratch / "plain")))
    targets.append(Target("plain mTLS", *start_plain(identity.module_dir), client_tls, metadata))
    module, address = start_module(scratch / "secured", identity=identity, nats_url=nats_url)
    targets.append(Target("sdk mTLS+token", module, address, client_tls, metadata))
    return asyncio.run(refusals(address, identity))


def ratio_line(label: str, ours: tuple[float, ...], base: tuple[float, ...], rss: tuple[float, float]) -> str:
    return (
        f"ratio {label}: throughput {ours[0] / base[0]:.2f}, p50 {ours[1] / base[1]:.2f}, "
        f"p99 {ours[2] / base[2]:.2f}, server CPU {ours[3] / base[3]:.2f}, idle RSS {rss[0] / rss[1]:.2f}"
    )


def record_ratios(label: str, ours: tuple[float, ...], base: tuple[float, ...]) -> None:
    """Hand `make bench` the ratios `ratio_line` prints (but idle RSS, recorded as MiB)."""
    figures.record(f"{label} throughput", ours[0] / base[0])
    for index, what in ((1, "p50"), (2, "p99"), (3, "server CPU")):
        figures.record(f"{label} {what}", ours[index] / base[index], better="lower")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per process set")
    parser.add_argument(
        "--process-sets",
        type=int,
        default=1,
        help="start the four servers afresh this many times: a process's own layout moves its figures by "
        "more than the rounds of one set do",
    )
    parser.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.calls, args.concurrency, args.rounds, args.process_sets) < 1:
        parser.error("--calls, --concurrency, --rounds and --process-sets must each be at least 1")
    if args.serve_plain:
        asyncio.run(serve_plain(args.tls_dir))
        return
    results: dict[str, list[Round]] = {}
    rss: dict[str, list[float]] = {}
    pss: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch_name, EmbeddedNats() as nats_server:
        scratch = Path(scratch_name)
        for folder in ("plain", "secured"):
            (scratch / folder).mkdir()
        identity = BenchIdentity.issue(scratch / "pki", MODULE)
        asyncio.run(enable_tenant(nats_server.url, MODULE))
        for _ in range(args.process_sets):
            targets: list[Target] = []
            try:
                refused = start_targets(scratch, identity, nats_server.url, targets)
                for target in targets:
                    rss.setdefault(target.name, []).append(idle_rss_mib(target.process.pid))
                    pss.setdefault(target.name, []).append(idle_pss_mib(target.process.pid))
                for name, rounds in measure(targets, args).items():
                    results.setdefault(name, []).extend(rounds)
            finally:
                for target in targets:
                    target.process.terminate()
                    target.process.wait(timeout=30)
    summary = {
        name: tuple(statistics.median(run[i] for run in runs) for i in range(4)) for name, runs in results.items()
    }
    idle_rss = {name: statistics.median(values) for name, values in rss.items()}
    idle_pss = {name: statistics.median(values) for name, values in pss.items()}
    print(
        f"unary SayHello, {args.calls} calls x {args.rounds} rounds x {args.process_sets} process sets, "
        f"{args.concurrency} concurrent, client in its own process"
    )
    print("sdk mTLS+token refused before timing: " + ", ".join(f"{case} -> {why}" for case, why in refused.items()))
    print(
        f"{'server':<16}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU µs/call':>13}{'idle RSS MiB':>14}"
        f"{'idle PSS MiB':>14}"
    )
    for name, (rate, p50, p99, cpu) in summary.items():
        print(
            f"{name:<16}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}{cpu:>13.0f}{idle_rss[name]:>14.1f}{idle_pss[name]:>14.1f}"
        )
    for ours, base in (("sdk", "plain"), ("sdk mTLS+token", "plain mTLS"), ("plain mTLS", "plain")):
        print(ratio_line(f"{ours} / {base}", summary[ours], summary[base], (idle_rss[ours], idle_rss[base])))
        record_ratios(f"{ours} / {base}", summary[ours], summary[base])
    figures.record("sdk idle RSS MiB", idle_rss["sdk"], better="lower")
    figures.record("sdk idle PSS MiB", idle_pss["sdk"], better="lower")


if __name__ == "__main__":
    main()
