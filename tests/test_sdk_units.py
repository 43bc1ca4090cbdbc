"""SDK parts that need no server: the state machine rules, latency quantiles, servicer
discovery and the error mapping."""

from __future__ import annotations

import grpc
import pytest

from greeter.v1 import greeter_pb2_grpc
from mesh.protocol.names import event_subject, matches, pattern_subject
from mesh.protocol.states import Call, State, Verdict, illegal_message, verdict
from mesh.protocol.streams import StreamSettings, ensure_streams
from mesh.protocol.telemetry import exporters
from mesh.v1 import event_pb2
from sdk import MeshError, Module
from sdk._events import codec_for
from sdk._metrics import LatencyHistogram
from sdk._module import served_services
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
