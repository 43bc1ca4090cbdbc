"""The cost of tracing: RPC and event throughput with tracing on (always_on sampling, OTLP
export of spans and metrics to a collector on this machine) against tracing off, in the
same run.

* RPC: the greeter module as its own process, served with and without the OTEL_* settings;
  unary SayHello from this process, 50 in flight (as bench.rpc).
* Events: bench.events' SDK paths (ephemeral and durable) in a subprocess, with and without.

The collector is a process of its own, so that receiving the exports slows neither the
module nor the client that loads it.

    python -m bench.tracing [--calls 6000] [--events 5000] [--rounds 3]
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
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench import figures
from bench.rpc import PROJECT, load, start_module


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        return metrics_service_pb2.ExportMetricsServiceResponse()


def start_collector() -> tuple[grpc.Server, str]:
    """An OTLP/gRPC collector in this process that accepts and drops everything (the export
    cost stays)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(), server)  # type: ignore[no-untyped-call]  # the generated *_pb2_grpc.py carries no annotations
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(), server)  # type: ignore[no-untyped-call]  # the generated *_pb2_grpc.py carries no annotations
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"http://127.0.0.1:{port}"


def serve_collector() -> None:
    """Run `start_collector` until stdin closes; its endpoint is the first line printed."""
    server, endpoint = start_collector()
    print(endpoint, flush=True)
    sys.stdin.read()
    server.stop(None)


def collector_process() -> tuple[subprocess.Popen[str], str]:
    """`serve_collector` as a process of its own, and its endpoint."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.tracing", "--serve-collector"],
        cwd=PROJECT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    endpoint = process.stdout.readline().strip()
    if not endpoint:
        process.kill()
        raise RuntimeError("the collector process did not start")
    return process, endpoint


def tracing_env(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
    }


def rpc_rate(env: dict[str, str], calls: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        process, address = start_module(Path(scratch), env)
        try:
            rate, _ = asyncio.run(load(address, calls, 50))
        finally:
            process.terminate()
            process.wait(timeout=30)
    return rate


def event_rates(env: dict[str, str], events: int) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.events", "--sdk-only-json", "--events", str(events), "--rounds", "1"],
        cwd=PROJECT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    rates: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-collector", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_collector:
        serve_collector()
        return
    collector, endpoint = collector_process()
    on_env, off_env = tracing_env(endpoint), {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    results: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            for label, env in (("off", off_env), ("on", on_env)):
                results.setdefault(f"rpc {label}", []).append(rpc_rate(env, args.calls))
                for mode, rate in event_rates(env, args.events).items():
                    results.setdefault(f"{mode} events {label}", []).append(rate)
    finally:
        assert collector.stdin is not None
        collector.stdin.close()
        collector.wait(timeout=30)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"tracing on (always_on, OTLP to a collector process) vs off, {args.rounds} rounds, medians")
    print(f"{'path':<22}{'off /s':>10}{'on /s':>10}{'on/off':>8}")
    for path in ("rpc", "ephemeral events", "durable events"):
        off, on = medians[f"{path} off"], medians[f"{path} on"]
        figures.record(f"{path} tracing on / off throughput", on / off)
        print(f"{path:<22}{off:>10.0f}{on:>10.0f}{on / off:>8.2f}")


if __name__ == "__main__":
    main()
