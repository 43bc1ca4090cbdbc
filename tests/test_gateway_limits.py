"""The gateway's rate limits: a token bucket per tenant and route, on a clock the test moves."""

from __future__ import annotations

import pytest

from mesh.gateway import limits
from mesh.gateway.limits import RateLimit, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_refused_until_the_bucket_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(rate=0.5, burst=3), clock)
    verdicts = [limiter.take("acme", "users/ListUsers") for _ in range(4)]
    assert [verdict.allowed for verdict in verdicts if verdict] == [True, True, True, False]
    refused = verdicts[3]
    assert refused is not None
    assert refused.headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
        "Retry-After": "2",
    }
    first = verdicts[0]
    assert first is not None and "Retry-After" not in first.headers() and first.remaining == 2
    clock.now += 1.9
    assert not limiter.take("acme", "users/ListUsers").allowed  # type: ignore[union-attr]
    clock.now += 0.2
    again = limiter.take("acme", "users/ListUsers")
    assert again is not None and again.allowed and again.remaining == 0


def test_each_tenant_and_route_has_its_own_bucket() -> None:
    limiter = RateLimiter(RateLimit(rate=1.0, burst=1), Clock())
    assert limiter.take("acme", "users/ListUsers").allowed  # type: ignore[union-attr]
    assert not limiter.take("acme", "users/ListUsers").allowed  # type: ignore[union-attr]
    assert limiter.take("acme", "users/GetUser").allowed  # type: ignore[union-attr]
    assert limiter.take("globex", "users/ListUsers").allowed  # type: ignore[union-attr]


def test_a_rate_of_zero_limits_nothing() -> None:
    assert RateLimiter(RateLimit(rate=0, burst=1), Clock()).take("acme", "users/ListUsers") is None


def test_a_flood_of_tenants_cannot_grow_the_buckets_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(RateLimit(rate=1.0, burst=2), clock)
    limiter.take("acme", "users/ListUsers")
    limiter.take("acme", "users/ListUsers")
    for n in range(7):  # buckets not full again: none can be forgotten for being full
        limiter.take(f"tenant-{n}", "users/ListUsers")
    assert not limiter.take("acme", "users/ListUsers").allowed  # type: ignore[union-attr]  # used last: kept
    for n in range(7, 1000):  # the flood: every bucket in use, the least recently used go
        limiter.take(f"tenant-{n}", "users/ListUsers")
        assert len(limiter._buckets) <= 10
