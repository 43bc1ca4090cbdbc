"""One trace across gRPC and NATS, and metrics over OTLP: a real OTLP/gRPC collector in the
test process receives what a real mesh of three module processes exports."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from httpkit import gateway_of_up
from meshkit import WAIT_SECONDS, MeshDir

pytestmark = pytest.mark.e2e

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # opentelemetry.proto Span.SpanKind values
STATUS_ERROR = 2  # opentelemetry.proto Status.StatusCode


class Collector:
    """Keeps every span and metric data point it is sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[dict] = []
        self.metric_names: dict[str, set[str]] = defaultdict(set)  # metric -> services

    def keep(self, request):
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            with self.lock:
                for resource_spans in request.resource_spans:
                    service = _service(resource_spans.resource)
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            self.spans.append(
                                {
                                    "service": service,
                                    "name": span.name,
                                    "kind": span.kind,
                                    "trace": span.trace_id.hex(),
                                    "id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(),
                                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                                    "status": span.status.code,
                                }
                            )
            return trace_service_pb2.ExportTraceServiceResponse()
        with self.lock:
            for resource_metrics in request.resource_metrics:
                service = _service(resource_metrics.resource)
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        self.metric_names[metric.name].add(service)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def _value(value):
    """An OTLP AnyValue as the Python value it holds."""
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def _service(resource) -> str:
    return next((a.value.string_value for a in resource.attributes if a.key == "service.name"), "?")


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def Export(self, request, context):
        return self.collector.keep(request)


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def Export(self, request, context):
        return self.collector.keep(request)


@pytest.fixture
def collector():
    keeper = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(keeper), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(keeper), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    keeper.endpoint = f"http://127.0.0.1:{port}"
    yield keeper
    server.stop(None)


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ancestors(span: dict, by_id: dict[str, dict]) -> list[dict]:
    chain = []
    while span["parent"] and span["parent"] in by_id:
        span = by_id[span["parent"]]
        chain.append(span)
    return chain


def test_one_trace_across_grpc_and_nats_and_metrics_over_otlp(tmp_path, collector):
    mesh = MeshDir(tmp_path)
    mesh.module("back", publishes=["greeting.sent"])
    mesh.module("front", depends=["back"])
    mesh.module("listener", subscribes=["greeting.sent"], cls="Listener")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "MESH_LOG_FORMAT": "json",
    }
    with mesh.up(**env) as running:
        modules = running.wait_until_up()

        async def greet() -> str:
            async with running.channel(modules["front"].address) as channel:
                reply = await greeter_pb2_grpc.GreeterStub(channel).SayHello(
                    greeter_pb2.SayHelloRequest(name="via:back:ada")
                )
                return reply.message

        assert asyncio.run(greet()).startswith("front via back pid")

        async def fail() -> grpc.StatusCode:
            async with running.channel(modules["front"].address) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    # "via:" without a name after the dependency: the servicer raises ValueError
                    await greeter_pb2_grpc.GreeterStub(channel).SayHello(greeter_pb2.SayHelloRequest(name="via:back"))
                return error.value.code()

        assert asyncio.run(fail()) == grpc.StatusCode.UNKNOWN
        running.wait_for(lambda: ("heard", "ada") in mesh.records(), "the listener to hear the greeting")

        def spans_asserted_on():
            with collector.lock:
                spans = list(collector.spans)
            try:
                return spans, locate(spans)
            except StopIteration:  # some span asserted on below has not arrived yet
                return None

        spans, found = wait_for(spans_asserted_on, "every span asserted on at the collector")

        def metrics_asserted_on():
            with collector.lock:
                names = {name: set(services) for name, services in collector.metric_names.items()}
            return (
                {"front", "back"} <= names.get("rpc.server.duration", set())
                and "back" in names.get("mesh.events.published", set())
                and "listener" in names.get("mesh.events.received", set())
            )

        wait_for(metrics_asserted_on, "the metric points of every module asserted on at the collector")
        log_line = next(
            line for line in (mesh.state / "logs" / "back.log").read_text().splitlines() if '"trace_id"' in line
        )

    by_id = {span["id"]: span for span in spans}
    assert {"mesh-coordinator", "front", "back", "listener"} <= {span["service"] for span in spans}

    # start-up: one trace, the coordinator's root, each module's initialize and start below it,
    # continued into the modules' own server spans
    root = found["root"]
    assert root["parent"] == ""
    for module in ("back", "front", "listener"):
        for phase in ("initialize", "start"):
            assert root in ancestors(found[f"{phase} {module}"], by_id)
        assert root in ancestors(found[f"served {module}"], by_id)

    # request -> publish -> handle: one trace id, each span the child of the one before
    assert found["front client"]["parent"] == found["front server"]["id"]
    assert found["back server"]["parent"] == found["front client"]["id"]
    assert found["producer"]["parent"] == found["back server"]["id"]
    assert found["consumer"]["parent"] == found["producer"]["id"]
    assert found["producer"]["name"] == "greeting.sent publish"
    assert found["consumer"]["name"] == "greeting.sent process"

    assert '"trace_id": "' in log_line and '"span_id": "' in log_line

    # a module's SERVER spans: the call's method, its status, its peer; a server error fails
    # the span, with the exception on it; health checks make none
    served = found["front server"]["attributes"]
    assert {key: served[key] for key in ("rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code")} == {
        "rpc.system": "grpc",
        "rpc.service": "greeter.v1.Greeter",
        "rpc.method": "SayHello",
        "rpc.grpc.status_code": 0,
    }
    assert served["net.peer.ip"] == "127.0.0.1" and served["net.peer.name"] == "localhost"
    assert found["front server"]["status"] != STATUS_ERROR
    failed = found["front failed"]
    assert failed["attributes"]["rpc.grpc.status_code"] == grpc.StatusCode.UNKNOWN.value[0]
    assert failed["status"] == STATUS_ERROR
    assert not [span for span in spans if span["name"].startswith("/grpc.health.")]


def locate(spans: list[dict]) -> dict[str, dict]:
    """The spans the test asserts on, by role; StopIteration while one is missing."""
    found = {"root": next(s for s in spans if s["name"] == "mesh up" and s["service"] == "mesh-coordinator")}
    startup = [s for s in spans if s["trace"] == found["root"]["trace"]]
    for module in ("back", "front", "listener"):
        for phase in ("initialize", "start"):
            found[f"{phase} {module}"] = next(s for s in startup if s["name"] == f"{phase} {module}")
        found[f"served {module}"] = next(
            s
            for s in startup
            if s["service"] == module and s["name"] == "/mesh.v1.Lifecycle/Initialize" and s["kind"] == SERVER
        )
    front_served = [
        s
        for s in spans
        if s["service"] == "front" and s["name"] == "/greeter.v1.Greeter/SayHello" and s["kind"] == SERVER
    ]
    found["front server"] = next(s for s in front_served if s["attributes"].get("rpc.grpc.status_code") == 0)
    found["front failed"] = next(s for s in front_served if s["attributes"].get("rpc.grpc.status_code") != 0)
    chain = [s for s in spans if s["trace"] == found["front server"]["trace"]]
    found["front client"] = next(s for s in chain if s["service"] == "front" and s["kind"] == CLIENT)
    found["back server"] = next(s for s in chain if s["service"] == "back" and s["kind"] == SERVER)
    found["producer"] = next(s for s in chain if s["service"] == "back" and s["kind"] == PRODUCER)
    found["consumer"] = next(s for s in chain if s["service"] == "listener" and s["kind"] == CONSUMER)
    return found


def test_a_request_through_the_gateway_is_the_root_of_its_trace(tmp_path, collector):
    """The HTTP gateway `mesh up` starts makes the SERVER span of each API request, the root of
    its trace: the module's span of the call is its child, and what the module calls below that."""
    mesh = MeshDir(tmp_path)
    mesh.module("back")
    mesh.module("front", depends=["back"])
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with mesh.up(**env) as running:
        running.wait_until_up()
        enabled = mesh.run_cli(
            "tenant", "enable", "acme", "front", "--with-dependencies", "--state-dir", str(mesh.state)
        )
        assert enabled.returncode == 0, enabled.stderr
        gateway = gateway_of_up(mesh, running)
        token = gateway.token("acme")
        greeted = gateway.eventually(
            lambda: (
                (answer := gateway.call("front", "SayHello", {"name": "via:back:ada"}, token)).status == 200 and answer
            ),
            "front to greet through the gateway",
        )
        assert greeted.body["message"].startswith("front via back pid")

        def the_chain():
            with collector.lock:
                spans = list(collector.spans)
            roots = [s for s in spans if s["name"] == "POST /api/v1/{module}/{method}" and s["parent"] == ""]
            for root in roots:
                trace = [s for s in spans if s["trace"] == root["trace"]]
                front = [s for s in trace if s["service"] == "front" and s["kind"] == SERVER]
                back = [s for s in trace if s["service"] == "back" and s["kind"] == SERVER]
                if front and back and root["attributes"].get("http.response.status_code") == 200:
                    return root, front[0], back[0], trace
            return None

        root, front, back, trace = wait_for(the_chain, "the gateway's trace at the collector")
    assert root["service"] == "mesh-coordinator" and root["kind"] == SERVER
    assert (
        root["attributes"]["mesh.module"] == "front"
        and root["attributes"]["rpc.method"] == "greeter.v1.Greeter.SayHello"
    )
    assert front["parent"] == root["id"]
    by_id = {span["id"]: span for span in trace}
    assert root in ancestors(back, by_id)
