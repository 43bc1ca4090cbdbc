"""SDK parts that need no server: the state machine rules, latency quantiles, servicer
discovery, the error mapping, and the event handlers' options and delivery outcomes."""

from __future__ import annotations

import grpc
import pytest
from nats.aio.msg import Msg
from pydantic import BaseModel

from greeter.v1 import greeter_pb2_grpc
from mesh.protocol.cloudevents import CloudEvent, to_nats
from mesh.protocol.names import event_subject, matches, pattern_subject
from mesh.protocol.states import Call, State, Verdict, illegal_message, verdict
from mesh.protocol.streams import StreamSettings, ensure_streams
from mesh.protocol.telemetry import exporters, tracing
from mesh.v1 import event_pb2
from sdk import Drop, Durable, Ephemeral, Event, MeshError, Module, Retry, handler_bindings, on
from sdk._metrics import LatencyHistogram, ModuleMetricsRecorder
from sdk._module import served_services
from sdk.events._delivery import ACK, Dispatcher
from sdk.events._delivery import Verdict as Delivered
from sdk.events._payloads import codec_for
from sdk.events._tracing import EventTracing
from sdk.testing import EmbeddedNats


@pytest.mark.parametrize(
    ("call", "state", "expected"),
    [
        (Call.INITIALIZE, State.REGISTERED, Verdict.RUN),
        (Call.INITIALIZE, State.FAILED, Verdict.RUN),
        (Call.INITIALIZE, State.INITIALIZED, Verdict.ALREADY),
        (Call.INITIALIZE, State.RUNNING, Verdict.ILLEGAL),
        (Call.START, State.INITIALIZED, Verdict.RUN),
        (Call.START, State.RUNNING, Verdict.ALREADY),
        (Call.START, State.REGISTERED, Verdict.ILLEGAL),
        (Call.STOP, State.RUNNING, Verdict.RUN),
        (Call.STOP, State.REGISTERED, Verdict.RUN),
        (Call.STOP, State.STOPPED, Verdict.ALREADY),
        (Call.STOP, State.SKIPPED, Verdict.ILLEGAL),
        (Call.RELOAD, State.RUNNING, Verdict.RUN),
        (Call.RELOAD, State.STOPPED, Verdict.ILLEGAL),
    ],
)
def test_transition_rules(call, state, expected):
    assert verdict(call, state) is expected


def test_an_illegal_call_without_advice_lists_the_legal_states():
    message = illegal_message("orders", Call.STOP, State.SKIPPED)
    assert (
        message
        == "module orders is SKIPPED: Stop is not legal now; Stop is legal in REGISTERED, INITIALIZED, RUNNING, FAILED"
    )


def test_latency_quantiles_come_from_the_buckets():
    histogram = LatencyHistogram()
    for milliseconds in [0.3] * 98 + [40, 4000]:
        histogram.observe(milliseconds)
    assert histogram.quantile(0.5) == 0.5
    assert histogram.quantile(0.99) == 50
    assert LatencyHistogram().quantile(0.99) == 0.0


def test_served_services_come_from_the_generated_servicer_bases():
    class Greeter(Module, greeter_pb2_grpc.GreeterServicer):
        pass

    class Plain(Module):
        pass

    assert [s.full_name for s in served_services(Greeter)] == ["greeter.v1.Greeter"]
    assert served_services(Greeter)[0].register is greeter_pb2_grpc.add_GreeterServicer_to_server
    assert served_services(Plain) == []


def test_each_reason_maps_to_one_status():
    assert MeshError("MODULE_NOT_FOUND", "x").status == grpc.StatusCode.NOT_FOUND
    assert MeshError("MODULE_DISABLED_FOR_TENANT", "x").status == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ValueError, match="unknown mesh error reason"):
        MeshError("SOMETHING_ELSE", "x")


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("order.created", "order.created", True),
        ("order.*", "order.created", True),
        ("*.created", "invoice.created", True),
        ("order.>", "order.created", True),
        (">", "anything.at_all", True),
        ("order.*", "invoice.created", False),
        ("order.created", "order.cancelled", False),
    ],
)
def test_event_patterns_match_like_nats_wildcards(pattern, event_type, expected):
    assert matches(pattern, event_type) is expected


def test_event_subjects():
    assert event_subject("order.created", "acme") == "mesh.evt.acme.order.created"
    assert event_subject("order.created", None) == "mesh.evt._.order.created"
    assert pattern_subject("order.*") == "mesh.evt.*.order.*"
    assert pattern_subject(">") == "mesh.evt.>"


def test_protobuf_payloads_travel_as_binary():
    codec = codec_for(event_pb2.Event)
    message = event_pb2.Event(id="e-1", type="order.created")
    assert codec.content_type == "application/protobuf"
    assert codec.decode(codec.encode(message)) == message


def test_stream_settings_from_the_environment():
    assert StreamSettings.from_env({}).max_age_seconds == 7 * 24 * 3600
    settings = StreamSettings.from_env({"MESH_EVENTS_RETENTION": "interest", "MESH_EVENTS_MAX_AGE_SECONDS": "60"})
    assert (settings.retention.value, settings.max_age_seconds) == ("interest", 60.0)
    for env in ({"MESH_EVENTS_RETENTION": "forever"}, {"MESH_EVENTS_MAX_AGE_SECONDS": "soon"}):
        with pytest.raises(MeshError) as raised:
            StreamSettings.from_env(env)
        assert raised.value.reason == "INVALID_CONFIG"


async def test_streams_are_created_idempotently_with_their_settings():
    import nats

    async with EmbeddedNats() as server:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await ensure_streams(js, StreamSettings(max_age_seconds=3600))
        await ensure_streams(js, StreamSettings(max_age_seconds=60))
        info = await js.stream_info("MESH_EVENTS")
        await client.close()
    assert info.config.max_age == 60
    assert sorted(info.config.subjects) == ["mesh.evt.>", "mesh.replay.>"]


def test_exporters_default_to_otlp_only_when_an_endpoint_is_set():
    assert exporters("TRACES", {}) == []
    assert exporters("TRACES", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}) == ["otlp"]
    assert exporters("METRICS", {"OTEL_METRICS_EXPORTER": "console,otlp"}) == ["console", "otlp"]
    assert exporters("TRACES", {"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_TRACES_EXPORTER": "none"}) == []
    with pytest.raises(ValueError, match="expected otlp, console or none"):
        exporters("TRACES", {"OTEL_TRACES_EXPORTER": "jaeger"})


def test_log_lines_inside_a_span_carry_its_ids():
    import json
    import logging

    from opentelemetry.sdk.trace import TracerProvider

    from mesh.protocol.logs import JsonFormatter, TextFormatter

    record = logging.LogRecord("mesh.module.x", logging.INFO, __file__, 1, "hello %s", ("ada",), None)
    assert "trace_id" not in TextFormatter().format(record)
    with TracerProvider().get_tracer("test").start_as_current_span("work") as span:
        ids = span.get_span_context()
        text = TextFormatter().format(record)
        entry = json.loads(JsonFormatter().format(record))
    assert text.endswith(f"hello ada trace_id={ids.trace_id:032x} span_id={ids.span_id:016x}")
    assert entry["message"] == "hello ada" and entry["trace_id"] == f"{ids.trace_id:032x}"


# --- events: the options of @on and the outcome of one delivery -------------------------


class Note(BaseModel):
    text: str


class Noter(Module):
    @on("note.added", delivery=Durable(max_deliveries=3, retry_delay=0.5))
    async def keep(self, note: Note) -> None:
        if note.text == "drop":
            raise Drop("not wanted")
        if note.text == "later":
            raise Retry(delay=2.0)
        if note.text == "boom":
            raise ValueError("boom")

    @on("note.*", delivery=Ephemeral(concurrency=2))
    async def glance(self, event: Event[Note]) -> None:
        if event.data.text == "boom":
            raise ValueError("boom")


def test_on_registers_and_returns_the_method_unchanged():
    async def handle(self, note: Note) -> None:
        pass

    assert on("note.added")(handle) is handle
    bindings = {binding.method_name: binding for binding in handler_bindings(Noter)}
    assert bindings["keep"].durable == Durable(max_deliveries=3, retry_delay=0.5)
    assert bindings["glance"].ephemeral == Ephemeral(concurrency=2) and bindings["glance"].wants_envelope


@pytest.mark.parametrize(
    ("delivery", "error", "advice"),
    [
        (Durable(max_deliveries=0), ValueError, "max_deliveries is 0; use at least 1"),
        (Durable(retry_delay=-1), ValueError, "delays cannot be negative"),
        (Durable(retry_delay=10, max_retry_delay=5), ValueError, "raise max_retry_delay or lower retry_delay"),
        (Durable(concurrency=0), ValueError, "concurrency is 0; use at least 1"),
        (Durable(ack_wait=0), ValueError, "ack_wait is 0"),
        (Ephemeral(concurrency=0), ValueError, "concurrency is 0"),
        (Durable, TypeError, "pass an instance, delivery=sdk.Durable(...)"),
    ],
)
def test_delivery_settings_that_mean_nothing_are_refused_when_the_handler_is_defined(delivery, error, advice):
    async def handle(self, note: Note) -> None:
        pass

    with pytest.raises(error) as raised:
        on("note.added", delivery=delivery)(handle)
    assert "@sdk.on('note.added') on" in str(raised.value) and "handle" in str(raised.value)
    assert advice in str(raised.value)


def test_an_ephemeral_handler_has_no_redelivery_settings():
    with pytest.raises(TypeError, match="max_deliveries"):
        Ephemeral(max_deliveries=3)


def note_message(text: str, event_type: str = "note.added") -> Msg:
    headers = to_nats(CloudEvent(id=f"n-{text}", type=event_type, source="test", tenant="acme"))
    body = Note(text=text).model_dump_json().encode()
    return Msg(_client=None, subject=f"mesh.evt.acme.{event_type}", data=body, headers=headers)


@pytest.mark.parametrize(
    ("handler", "text", "attempt", "verdict", "delay", "reason", "counted"),
    [
        ("keep", "fine", 1, Delivered.ACK, 0.0, "", "received"),
        ("keep", "drop", 1, Delivered.DROP, 0.0, "", "dropped"),
        ("keep", "later", 1, Delivered.RETRY, 2.0, "", "received"),
        ("keep", "boom", 1, Delivered.RETRY, 0.5, "", "failed"),
        ("keep", "boom", 2, Delivered.RETRY, 1.0, "", "failed"),
        ("keep", "boom", 3, Delivered.DEAD_LETTER, 0.0, "ValueError: boom (after 3 deliveries)", "failed"),
        ("keep", "later", 3, Delivered.DEAD_LETTER, 0.0, "retry asked: ", "received"),
        ("glance", "boom", 1, Delivered.FAILED, 0.0, "ValueError: boom", "failed"),
    ],
)
async def test_one_delivery_says_what_became_of_the_event(handler, text, attempt, verdict, delay, reason, counted):
    recorder = ModuleMetricsRecorder("noter", frozenset())
    binding = next(b for b in handler_bindings(Noter) if b.method_name == handler)
    outcome = await Dispatcher(Noter(), "noter", recorder).deliver(binding, note_message(text), attempt, None)
    assert (outcome.verdict, outcome.delay) == (verdict, delay)
    assert outcome.reason.startswith(reason)
    assert recorder.events["note.added"][counted] == 1
    assert recorder.events["note.added"]["redelivered"] == (attempt > 1)


async def test_an_unreadable_or_foreign_tenant_event_is_not_handled():
    recorder = ModuleMetricsRecorder("noter", frozenset())
    keep, glance = (next(b for b in handler_bindings(Noter) if b.method_name == n) for n in ("keep", "glance"))
    dispatcher = Dispatcher(Noter(), "noter", recorder)
    garbled = Msg(_client=None, subject="mesh.evt.acme.note.added", data=b"{}", headers=note_message("x").headers)

    async def refuse(event: Event[Note]) -> bool:
        return False

    assert (await dispatcher.deliver(keep, note_message("fine"), 1, refuse)).verdict is Delivered.SKIP
    dead = await dispatcher.deliver(keep, garbled, 1, None)
    assert dead.verdict is Delivered.DEAD_LETTER and dead.reason.startswith("payload does not validate")
    assert (await dispatcher.deliver(glance, garbled, 1, None)).verdict is Delivered.FAILED
    counts = recorder.events["note.added"]
    assert (counts["skipped"], counts["failed"], counts["received"], counts["dead_lettered"]) == (1, 1, 0, 0)


def test_every_handler_registered_through_the_gated_server_is_gated_by_either_path():
    """Registered methods (what generated code registers) and generic handlers (what anything
    else may register) both come out gated, and the server offers no other way to register,
    so nothing is served past the gate."""
    import asyncio

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2_grpc

    from sdk.runtime._gating import GatedServer

    seen: list[str] = []

    def gate(method):
        def check(context):
            seen.append(method)
            return MeshError("ACCESS_DENIED", f"nobody may call {method}")

        return check

    async def call_both() -> None:
        server = grpc.aio.server()
        gated = GatedServer(server, ModuleMetricsRecorder("unit", frozenset()), gate)
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), gated)  # both paths
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection_pb2_grpc.ServerReflectionServicer(), gated
        )

        async def echo(request: bytes, context: object) -> bytes:
            return request

        echo_handler = grpc.unary_unary_rpc_method_handler(echo)
        gated.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("unit.v1.Echo", {"Say": echo_handler})])
        with pytest.raises(AttributeError):
            gated.add_insecure_port  # noqa: B018  # serving goes through the real server, never this view
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                # opened and never written to, so the refusal cannot race a request being sent
                stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
                assert await stream.code() == grpc.StatusCode.PERMISSION_DENIED
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await channel.unary_unary("/unit.v1.Echo/Say")(b"hello")
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            await server.stop(None)

    asyncio.run(call_both())
    assert seen == [
        "/grpc.health.v1.Health/Check",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/unit.v1.Echo/Say",
    ]


async def test_an_untraced_module_passes_on_the_trace_context_of_the_event_it_handles():
    """Without an exporter no span is built, yet an event published while handling one
    carries the handled event's trace on, and one published outside any carries none."""
    assert not tracing(), "this test needs a process that does not trace"
    events = EventTracing("relay")
    sent: list[dict[str, str]] = []

    async def send(headers: dict[str, str]) -> None:
        sent.append(dict(headers))

    async def publish_follow_up() -> object:
        await events.publish("order.audited", "mesh.evt._.order.audited", "2", {"ce-id": "2"}, send)
        return ACK

    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    handled = Msg(
        _client=None,  # type: ignore[arg-type]  # never used to reply
        subject="mesh.evt._.order.created",
        data=b"{}",
        headers={"ce-type": "order.created", "traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert await events.process(handled, "relay-audit", 1, publish_follow_up) is ACK
    await events.publish("order.audited", "mesh.evt._.order.audited", "3", {"ce-id": "3"}, send)

    assert sent[0]["traceparent"].split("-")[1] == trace_id
    assert sent[1] == {"ce-id": "3"}
