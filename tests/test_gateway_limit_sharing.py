"""Rate limits shared between gateway replicas through a real nats-server: what one replica
admits comes off the others' buckets; garbage on the subject is counted and ignored; a NATS
outage leaves each replica limiting alone, and sharing resumes when NATS is back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mesh.gateway.limit_plans import RateLimits
from mesh.gateway.limit_sharing import MAX_ENTRIES_PER_REPORT, LimitSharing, UsageReport, reports
from mesh.gateway.limits import RateLimit, RateLimiter, Uniform
from mesh.gateway.metrics import GatewayMetrics
from mesh.gateway.settings import LimitsBus
from mesh.protocol.names import RATE_LIMIT_USAGE_SUBJECT
from mesh.protocol.nats_server import EmbeddedNats
from sdk.testing import eventually

ROUTE = "users/users.v1.Users/ListUsers"
SLOW = RateLimit(rate=0.001, burst=3)
"""Three calls, then none for the rest of a test: what is left is what the replicas took."""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Replica:
    """One gateway's limiter and metrics, sharing through NATS."""

    def __init__(self, servers: str, limit: RateLimit = SLOW) -> None:
        self.metrics = GatewayMetrics()
        self.limiter = RateLimiter(Uniform(limit), shared=True)
        self.sharing = LimitSharing(self.limiter, LimitsBus((servers,)), self.metrics)

    def take(self, tenant: str = "acme") -> bool:
        verdict = self.limiter.take(tenant, "users", ROUTE)
        assert verdict is not None
        return verdict.allowed

    def sample(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(name) or 0.0

    def heard(self) -> float:
        return self.sample("mesh_gateway_rate_limit_shared_calls_total")

    def sharing_now(self) -> bool:
        return self.sample("mesh_gateway_rate_limit_sharing") == 1.0


@asynccontextmanager
async def replicas(servers: str, count: int = 2) -> AsyncIterator[list[Replica]]:
    started = [Replica(servers) for _ in range(count)]
    for replica in started:
        replica.sharing.start()
    try:
        await eventually(lambda: all(replica.sharing_now() for replica in started), "the replicas to reach NATS")
        yield started
    finally:
        for replica in started:
            await replica.sharing.stop()


def at_least(replica: Replica, calls: int) -> Callable[[], bool]:
    return lambda: replica.heard() >= calls


async def test_the_calls_one_replica_admits_come_off_the_others_buckets() -> None:
    async with EmbeddedNats() as server, replicas(server.url) as (first, second):
        assert [first.take() for _ in range(3)] == [True, True, True]
        await eventually(at_least(second, 3), "the second replica to hear of the first's three calls")
        refused = second.limiter.take("acme", "users", ROUTE)
        assert refused is not None and not refused.allowed and refused.remaining == 0
        assert refused.headers()["Retry-After"] == str(refused.reset_seconds) and refused.reset_seconds >= 1
        assert second.take("globex"), "another tenant's bucket is its own"
        await eventually(at_least(first, 1), "the first replica to hear of globex's call")
        assert first.heard() == 1, "a refused call is not reported"


async def test_what_the_replicas_admitted_together_is_paid_back_before_a_call_fits() -> None:
    """Two replicas that each admitted a full burst before hearing of each other: the bucket
    is a burst below empty, and stays shut until the rate has refilled it."""
    clock = Clock()
    limiter = RateLimiter(Uniform(RateLimit(rate=1.0, burst=3)), clock, shared=True)
    assert [limiter.take("acme", "users", ROUTE).allowed for _ in range(3)] == [True] * 3  # type: ignore[union-attr]
    limiter.deduct("acme", "users", ROUTE, 3)  # the other replica's burst
    assert limiter.admitted() == {("acme", "users", ROUTE): 3}
    assert limiter.admitted() == {}, "each call is reported once"
    clock.now += 3.5
    refused = limiter.take("acme", "users", ROUTE)
    assert refused is not None and not refused.allowed and refused.reset_seconds == 1
    clock.now += 0.5
    assert limiter.take("acme", "users", ROUTE).allowed  # type: ignore[union-attr]


def test_an_unshared_limiter_keeps_no_count_and_an_unlimited_call_deducts_nothing() -> None:
    limiter = RateLimiter(Uniform(RateLimit(rate=1.0, burst=1)), Clock())
    limiter.take("acme", "users", ROUTE)
    assert limiter.admitted() == {}
    unlimited = RateLimiter(Uniform(RateLimit(rate=0, burst=1)), Clock(), shared=True)
    unlimited.deduct("acme", "users", ROUTE, 5)
    assert unlimited.take("acme", "users", ROUTE) is None and unlimited.admitted() == {}


async def test_garbage_on_the_subject_is_counted_and_ignored() -> None:
    async with EmbeddedNats() as server, replicas(server.url, count=1) as (replica,):
        stranger = await nats.connect(server.url)
        try:
            garbage = [
                b"",
                b"\xff\xfe not json",
                b"[]",
                json.dumps({"replica": "x", "admitted": [["acme", "users", ROUTE, -5]]}).encode(),
                json.dumps({"replica": "x", "admitted": [["acme", "users", ROUTE, 2**40]]}).encode(),
                json.dumps({"replica": "x", "admitted": [["acme", "users"]]}).encode(),
                json.dumps({"replica": "x", "admitted": [], "extra": 1}).encode(),
            ]
            for message in garbage:
                await stranger.publish(RATE_LIMIT_USAGE_SUBJECT, message)
            for message in reports("stranger", {("acme", "users", ROUTE): 2}):
                await stranger.publish(RATE_LIMIT_USAGE_SUBJECT, message)
            await stranger.flush()
        finally:
            await stranger.close()
        await eventually(at_least(replica, 2), "the valid report after the garbage to be heard")
        assert replica.sample("mesh_gateway_rate_limit_reports_refused_total") == len(garbage)
        assert replica.take() and not replica.take(), "of three calls, the stranger's report took two"


async def test_while_nats_is_away_each_replica_limits_alone_and_sharing_resumes() -> None:
    server = EmbeddedNats()
    async with server, replicas(server.url) as (first, second):
        port = server.port or int(server.url.rsplit(":", 1)[1])
        server.stop()
        await eventually(lambda: not first.sharing_now() and not second.sharing_now(), "both to lose NATS")
        assert first.take(), "a replica without NATS still admits what its own bucket holds"
        await eventually(
            lambda: first.sample("mesh_gateway_rate_limit_unshared_calls_total") == 1, "the call to go unreported"
        )
        async with EmbeddedNats(port=port):
            await eventually(lambda: first.sharing_now() and second.sharing_now(), "both to reach NATS again")
            assert first.take() and first.take() and not first.take()
            await eventually(at_least(second, 2), "the calls made since NATS is back to be heard")
            assert second.heard() == 2, "a report made while NATS was away is dropped, not charged late"
            assert second.take(), "the second replica's bucket held three: the first's two came off it"
            assert not second.take()


async def test_a_replica_started_before_nats_shares_once_nats_answers(unused_tcp_port: int) -> None:
    replica = Replica(f"nats://127.0.0.1:{unused_tcp_port}")
    replica.sharing.start()
    try:
        assert replica.take(), "it limits alone meanwhile"
        async with EmbeddedNats(port=unused_tcp_port) as server, replicas(server.url, count=1) as (other,):
            await eventually(replica.sharing_now, "the replica to reach NATS once it is there")
            assert other.take()
            await eventually(at_least(replica, 1), "the other replica's call to be heard")
    finally:
        await replica.sharing.stop()


def test_many_keys_are_told_in_several_reports_that_each_validate() -> None:
    admitted = {(f"tenant-{n}", "users", ROUTE): n + 1 for n in range(MAX_ENTRIES_PER_REPORT * 2 + 1)}
    told = [UsageReport.model_validate_json(report) for report in reports("me", admitted)]
    assert [len(report.admitted) for report in told] == [MAX_ENTRIES_PER_REPORT, MAX_ENTRIES_PER_REPORT, 1]
    assert {(t, m, r): c for report in told for t, m, r, c in report.admitted} == admitted


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_message_is_a_report_or_a_validation_error(data: bytes) -> None:
    try:
        UsageReport.model_validate_json(data)
    except ValidationError:
        pass


def test_limits_of_zero_everywhere_limit_nothing_and_are_not_shared() -> None:
    assert RateLimits.uniform(RateLimit(0, 1)).limits_nothing
    assert not RateLimits.uniform(RateLimit(1, 1)).limits_nothing
    assert not RateLimits.model_validate(
        {"rate": 0, "plans": {"free": {"modules": {"orders": {"rate": 1}}}}}
    ).limits_nothing
    assert not RateLimits.model_validate({"rate": 0, "modules": {"orders": {"rate": 2}}}).limits_nothing


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unusable_nats_url_is_said_and_the_replica_limits_alone(caplog: pytest.LogCaptureFixture) -> None:
    replica = Replica("nats://bad host:x")
    replica.sharing.start()
    try:
        await eventually(lambda: "stopped sharing rate limits" in caplog.text, "the error to be logged")
        assert replica.take() and not replica.sharing_now()
    finally:
        await replica.sharing.stop()
