"""The protocol layer as data: the reason table mirrors errors.proto, and the CloudEvents
NATS codec round-trips every attribute and refuses what is not an event."""

from __future__ import annotations

import grpc
import nats.errors
import nats.js.errors
import pytest

from mesh.protocol import cloudevents, deadletters, streams
from mesh.protocol.cloudevents import CloudEvent, NotAnEvent
from mesh.protocol.errors import PROTO_REASONS, MeshError, Reason, status_of


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
