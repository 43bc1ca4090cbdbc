"""The protocol layer as data: the reason table mirrors errors.proto, the CloudEvents NATS
codec round-trips every attribute and refuses what is not an event or lies about itself,
`_` (no tenant) is no tenant id, an error never quotes a huge input whole, and a MeshError
raised behind a guarded handler reaches the caller with its own status and reason."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import nats.errors
import nats.js.errors
import pytest
from google.protobuf import struct_pb2

from mesh.protocol import cloudevents, deadletters, names, streams
from mesh.protocol.cloudevents import CloudEvent, DisagreesWithSubject, InvalidExtension, NotAnEvent
from mesh.protocol.errors import (
    MAX_MESSAGE_BYTES,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_VALUE_BYTES,
    PROTO_REASONS,
    MeshError,
    Reason,
    error_info,
    excerpt,
    status_of,
)
from mesh.protocol.guarded_handlers import guarded_handler
from mesh.protocol.layers import config_from_struct, non_finite_path


def test_reason_enum_mirrors_errors_proto() -> None:
    assert {reason.value for reason in Reason} == PROTO_REASONS


def test_every_reason_has_one_status() -> None:
    for reason in Reason:
        assert isinstance(status_of(reason), grpc.StatusCode)
    assert MeshError(Reason.MODULE_NOT_FOUND, "x").status is grpc.StatusCode.NOT_FOUND
    assert MeshError("MODULE_NOT_FOUND", "x").reason is Reason.MODULE_NOT_FOUND


def test_unknown_reason_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown mesh error reason 'NOPE'.*MODULE_NOT_FOUND"):
        MeshError("NOPE", "x")


def test_an_excerpt_is_short_one_line_and_says_how_long_the_input_was() -> None:
    assert excerpt("acme\n") == "'acme\\n'"
    long = excerpt("a" * 100_000)
    assert len(long) < 80 and long.endswith("(100000 chars)")
    assert excerpt(b"\xff" * 1_000).endswith("(1000 bytes)")


@pytest.mark.parametrize("text", ["x" * 100_000, "\u00e9" * 100_000, "\u4e2d" * 100_000])
def test_a_mesh_error_caps_what_it_quotes_and_keeps_both_ends(text: str) -> None:
    error = MeshError(
        "INVALID_TENANT",
        f"tenant {text} is not valid: use letters",
        metadata={"t": text, **{str(i): text for i in range(20)}},
    )
    assert len(error.message.encode()) <= MAX_MESSAGE_BYTES
    assert error.message.startswith("tenant ") and error.message.endswith("use letters")
    assert len(error.metadata) == MAX_METADATA_ENTRIES
    assert all(len(value.encode()) <= MAX_METADATA_VALUE_BYTES for value in error.metadata.values())
    status = error.to_grpc_status()
    assert sum(len(value) for _, value in status.trailing_metadata) < 4_000


def test_ids_are_matched_whole_so_a_trailing_line_break_is_refused() -> None:
    for value in ("acme\n", "acme\r\n", "a" * 129, ""):
        with pytest.raises(MeshError) as refused:
            names.check_id(value, "tenant")
        assert refused.value.status is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(MeshError):
        names.check_token("acme\n", "tenant")
    assert names.check_id("acme-1_x", "tenant") == "acme-1_x"


def test_a_configuration_with_nan_or_infinity_is_refused_naming_where() -> None:
    struct = struct_pb2.Struct()
    struct.update({"limits": {"rates": [1, math.inf]}, "name": "x"})
    with pytest.raises(MeshError) as refused:
        config_from_struct(struct, "the configuration of module orders")
    assert refused.value.reason is Reason.INVALID_CONFIG and "'limits.rates[1]'" in refused.value.message
    assert non_finite_path({"a": [{"b": math.nan}]}) == "a[0].b"
    struct = struct_pb2.Struct()
    struct.update({"a": {"b": [1, "two", None, True]}})
    assert config_from_struct(struct, "x") == {"a": {"b": [1.0, "two", None, True]}}


def test_codec_round_trips_every_attribute() -> None:
    event = CloudEvent(
        id="e1",
        type="order.created",
        source="mesh://orders",
        data=b'{"id": 1}',
        time="2026-11-24T10:00:00+00:00",
        subject="order-1",
        tenant="acme",
        company="acme-eu",
        datacontenttype="application/json",
        dataschema="https://example.org/order.json",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="vendor=1",
        extensions={"priority": "high"},
    )
    headers = cloudevents.to_nats(event)
    assert headers["Nats-Msg-Id"] == "e1" and headers["ce-specversion"] == "1.0"
    assert headers["ce-priority"] == "high" and headers["ce-tenant"] == "acme"
    assert cloudevents.from_nats(headers, event.data) == event


def test_codec_leaves_out_empty_optional_attributes() -> None:
    headers = cloudevents.to_nats(CloudEvent(id="e2", type="a.b", source="s"))
    assert set(headers) == {"ce-specversion", "ce-id", "ce-source", "ce-type", "content-type", "Nats-Msg-Id"}
    assert headers["content-type"] == "application/json"


def test_a_message_without_required_attributes_is_not_an_event() -> None:
    with pytest.raises(NotAnEvent, match=r"missing header\(s\) ce-id, ce-specversion"):
        cloudevents.from_nats({"ce-type": "a.b", "ce-source": "s"}, b"")
    lenient = cloudevents.from_nats(None, None, strict=False)
    assert lenient.id == "" and lenient.data == b""


ATTRIBUTES = (
    "id source type specversion time subject tenant company datacontenttype dataschema data traceparent tracestate"
).split()
"""The CloudEvents attributes and the mesh's: the names no extension may have."""


def test_the_reserved_extension_names_are_the_attributes() -> None:
    assert cloudevents.RESERVED_EXTENSIONS == set(ATTRIBUTES)


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_an_extension_never_overwrites_an_attribute(name: str) -> None:
    event = CloudEvent(id="e4", type="a.b", source="mesh://real", tenant="acme", extensions={name: "forged"})
    with pytest.raises(InvalidExtension, match=rf"extension '{name}' collides with the CloudEvents attribute"):
        cloudevents.to_nats(event)
    with pytest.raises(InvalidExtension, match=f"'{name}'"):
        cloudevents.check_extensions({"priority": "high", name: "forged"})


@pytest.mark.parametrize("name", ["", "Priority", "with-dash", "with_underscore", "a" * 21, "ünï"])
def test_an_extension_needs_a_cloudevents_attribute_name(name: str) -> None:
    with pytest.raises(InvalidExtension, match="1-20 lowercase letters and digits"):
        cloudevents.to_nats(CloudEvent(id="e5", type="a.b", source="s", extensions={name: "x"}))
    cloudevents.check_extensions({"a" * 20: "x", "v2": "y"})


def test_headers_that_no_extension_may_have_are_not_read_as_extensions() -> None:
    original = cloudevents.to_nats(CloudEvent(id="e6", type="a.b", source="s", extensions={"priority": "high"}))
    noise = {"ce-data": "x", "ce-traceparent": "y", "ce-Upper": "z", "ce-with-dash": "w"}
    read = cloudevents.from_nats({**original, **noise}, b"")
    assert read.extensions == {"priority": "high"}
    assert cloudevents.to_nats(read) == original  # what is read can always be written again


def test_an_event_must_say_the_tenant_and_type_of_its_subject() -> None:
    def headers(**attributes: str) -> dict[str, str]:
        return cloudevents.to_nats(CloudEvent(**{"id": "e7", "type": "order.created", "source": "s", **attributes}))

    agreeing = cloudevents.from_nats(headers(tenant="acme"), b"", subject="mesh.evt.acme.order.created")
    assert agreeing.tenant == "acme"
    assert cloudevents.from_nats(headers(), b"", subject="mesh.evt._.order.created").tenant == ""
    with pytest.raises(DisagreesWithSubject, match="subject says tenant 'acme', ce-tenant says 'globex'"):
        cloudevents.from_nats(headers(tenant="globex"), b"", subject="mesh.evt.acme.order.created")
    with pytest.raises(DisagreesWithSubject, match="subject says tenant 'acme', ce-tenant says ''"):
        cloudevents.from_nats(headers(), b"", subject="mesh.evt.acme.order.created")
    with pytest.raises(DisagreesWithSubject, match="subject says no tenant, ce-tenant says 'acme'"):
        cloudevents.from_nats(headers(tenant="acme"), b"", subject="mesh.evt._.order.created")
    with pytest.raises(DisagreesWithSubject, match="subject says no tenant, ce-tenant says '_'"):
        cloudevents.from_nats(headers(tenant="_"), b"", subject="mesh.evt._.order.created")
    with pytest.raises(DisagreesWithSubject, match=r"subject says type 'order\.paid', ce-type says 'order\.created'"):
        cloudevents.from_nats(headers(tenant="acme"), b"", subject="mesh.evt.acme.order.paid")
    assert isinstance(DisagreesWithSubject("x"), NotAnEvent)  # delivery treats it as any unreadable event
    # a replayed dead letter names its consumer, not a tenant: its headers are the original's
    replayed = cloudevents.from_nats(headers(tenant="acme"), b"", subject=names.replay_subject("ledger--book"))
    assert replayed.tenant == "acme"
    # inspecting what is there (a dead letter) checks nothing
    lenient = cloudevents.from_nats(headers(tenant="globex"), b"", strict=False, subject="mesh.evt.acme.order.created")
    assert lenient.tenant == "globex"


def test_event_subject_parts_read_back_what_event_subject_wrote() -> None:
    assert names.event_subject_parts(names.event_subject("order.created", "acme")) == ("acme", "order.created")
    assert names.event_subject_parts(names.event_subject("a.b.c", None)) == ("", "a.b.c")
    assert names.event_subject_parts("mesh.replay.ledger--book") is None
    assert names.event_subject_parts("mesh.sys.module.base.started") is None


def test_the_no_tenant_marker_is_no_tenant_id() -> None:
    with pytest.raises(MeshError, match="tenant '_' is reserved for \"no tenant\"") as as_id:
        names.check_id(names.NO_TENANT, "tenant")
    assert as_id.value.reason == "INVALID_TENANT"
    with pytest.raises(MeshError, match='reserved for "no tenant"') as as_token:
        names.check_token(names.NO_TENANT, "tenant")
    assert as_token.value.reason == "INVALID_EVENT"
    assert names.check_id("_acme", "tenant") == "_acme"
    assert names.check_id("_", "company") == "_"  # only the tenant has a place on the subject
    names.check_token("a_b", "tenant")


def test_a_dead_letter_keeps_the_original_and_says_why_and_a_replay_restores_it() -> None:
    original = cloudevents.to_nats(CloudEvent(id="e3", type="order.created", source="mesh://shop"))
    given_up = deadletters.GivenUp("ValueError: no", "ledger", "book", "ledger--book", "3", "mesh.evt._.x.y", "t")
    headers = deadletters.headers_of(original, given_up, sequence=42)
    assert headers["Nats-Msg-Id"] == "dlq-ledger--book-42" and headers["ce-id"] == "e3"
    assert deadletters.given_up_of(headers) == given_up
    replayed = deadletters.replay_headers(headers, 42, "r1")
    assert replayed == {**original, "Nats-Msg-Id": "replay-42-r1", "mesh-replay-of": "42"}


async def test_provisioning_waits_for_a_jetstream_not_ready_and_gives_up_with_what_it_was_doing() -> None:
    answers: list[BaseException | str] = [nats.errors.TimeoutError(), nats.js.errors.ServiceUnavailableError(), "ok"]

    async def work() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert await streams.provisioned("creating a test stream", work) == "ok"

    async def never() -> str:
        raise nats.errors.TimeoutError()

    with pytest.raises(MeshError, match="JetStream did not answer while creating a test stream") as refused:
        await streams.provisioned("creating a test stream", never, within=0.3)
    assert refused.value.reason == "MODULE_UNAVAILABLE"

    async def wrong() -> str:
        raise ValueError("a bad config")

    with pytest.raises(ValueError, match="a bad config"):  # not a readiness problem: no retry
        await streams.provisioned("creating a test stream", wrong)


class _GuardedEcho(grpc.aio.ServerInterceptor):
    """Every call through `guarded_handler`: refused when it carries `x-refuse`, and observed."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, bool]] = []

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method.rsplit("/", 1)[-1]

        def check(context):
            if any(key == "x-refuse" for key, _ in context.invocation_metadata()):
                return MeshError("ACCESS_DENIED", f"{method} refused")
            return None

        ended = self.ended

        class Observe:
            def start(self) -> float:
                return 0.0

            def end(self, context, started: float, failed: bool) -> None:
                ended.append((method, failed))

        return guarded_handler(await continuation(handler_call_details), check, observe=Observe())


async def test_a_guarded_handler_checks_every_call_kind_before_its_behaviour_and_tells_how_it_ended() -> None:
    ran: list[str] = []

    async def unary_unary(request: bytes, context: object) -> bytes:
        ran.append("UnaryUnary")
        return request.upper()

    async def unary_stream(request: bytes, context: object):
        ran.append("UnaryStream")
        for part in request.split(b","):
            yield part

    async def stream_unary(requests, context: object) -> bytes:
        ran.append("StreamUnary")
        return b"+".join([part async for part in requests])

    async def stream_stream(requests, context: object):
        ran.append("StreamStream")
        async for part in requests:
            yield part * 2

    guard = _GuardedEcho()
    server = grpc.aio.server(interceptors=[guard])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "UnaryUnary": grpc.unary_unary_rpc_method_handler(unary_unary),
                    "UnaryStream": grpc.unary_stream_rpc_method_handler(unary_stream),
                    "StreamUnary": grpc.stream_unary_rpc_method_handler(stream_unary),
                    "StreamStream": grpc.stream_stream_rpc_method_handler(stream_stream),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

            async def parts() -> AsyncIterator[bytes]:
                for part in (b"a", b"b"):
                    yield part

            def calls(metadata: tuple[tuple[str, str], ...]) -> dict[str, Callable[[], Awaitable[object]]]:
                unary_stream, stream_stream = channel.unary_stream, channel.stream_stream
                return {
                    "UnaryUnary": lambda: channel.unary_unary("/test.Echo/UnaryUnary")(b"a", metadata=metadata),
                    "UnaryStream": lambda: _all(unary_stream("/test.Echo/UnaryStream")(b"a,b", metadata=metadata)),
                    "StreamUnary": lambda: channel.stream_unary("/test.Echo/StreamUnary")(parts(), metadata=metadata),
                    "StreamStream": lambda: _all(stream_stream("/test.Echo/StreamStream")(parts(), metadata=metadata)),
                }

            answers = {method: await call() for method, call in calls(()).items()}
            assert answers == {
                "UnaryUnary": b"A",
                "UnaryStream": [b"a", b"b"],
                "StreamUnary": b"a+b",
                "StreamStream": [b"aa", b"bb"],
            }
            refuse = (("x-refuse", "1"),)
            for method in ("UnaryUnary", "UnaryStream"):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await calls(refuse)[method]()
                assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
                assert refused.value.details() == f"{method} refused"
            # A client-streaming call is opened and never written to: a refusal that races a
            # client still sending ends that send with INTERNAL on the client's side instead.
            for method, open_call in (
                ("StreamUnary", channel.stream_unary("/test.Echo/StreamUnary")),
                ("StreamStream", channel.stream_stream("/test.Echo/StreamStream")),
            ):
                call = open_call(metadata=refuse)
                assert await call.code() is grpc.StatusCode.PERMISSION_DENIED
                assert await call.details() == f"{method} refused"
    finally:
        await server.stop(None)

    assert sorted(ran) == sorted(answers)  # the refused calls never reached a behaviour
    assert sorted(guard.ended) == sorted([(method, False) for method in answers] + [(m, True) for m in answers])


async def _all(responses: AsyncIterator[bytes]) -> list[bytes]:
    return [response async for response in responses]


async def test_a_mesh_error_raised_behind_a_guarded_handler_keeps_its_status_and_reason() -> None:
    """A publish timeout inside a servicer, say: the caller reads DEADLINE_EXCEEDED and TIMEOUT
    (retriable), not UNKNOWN; for a unary and a streaming call, before and after a response."""

    async def unary(request: bytes, context: object) -> bytes:
        raise MeshError("TIMEOUT", "publishing order.created timed out; retry", metadata={"event": "order.created"})

    async def streaming(request: bytes, context: object):
        yield b"first"
        raise MeshError("TIMEOUT", "publishing order.created timed out; retry")

    def sync_unary(request: bytes, context: object) -> bytes:
        raise MeshError("MODULE_NOT_FOUND", "no module 'x'")

    server = grpc.aio.server(interceptors=[_GuardedEcho()])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Failing",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(unary),
                    "Streaming": grpc.unary_stream_rpc_method_handler(streaming),
                    "SyncUnary": grpc.unary_unary_rpc_method_handler(sync_unary),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary("/test.Failing/Unary")(b"x")
            assert failed.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            info = error_info(failed.value)
            assert info is not None and info.reason == "TIMEOUT" and info.metadata["event"] == "order.created"

            call = channel.unary_stream("/test.Failing/Streaming")(b"x")
            received = []
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                async for response in call:
                    received.append(response)
            assert received == [b"first"]
            assert failed.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert failed.value.details() == "publishing order.created timed out; retry"

            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary("/test.Failing/SyncUnary")(b"x")
            assert failed.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(None)
