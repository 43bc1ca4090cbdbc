"""The gateway's rate limits: a token bucket per tenant and route, on a clock the test moves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh.gateway import limits
from mesh.gateway.limit_plans import read_rate_limits
from mesh.gateway.limits import RateLimit, RateLimiter, Uniform


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_refused_until_the_bucket_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(Uniform(RateLimit(rate=0.5, burst=3)), clock)
    verdicts = [limiter.take("acme", "users", "users/ListUsers") for _ in range(4)]
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
    assert not limiter.take("acme", "users", "users/ListUsers").allowed  # type: ignore[union-attr]
    clock.now += 0.2
    again = limiter.take("acme", "users", "users/ListUsers")
    assert again is not None and again.allowed and again.remaining == 0


def test_each_tenant_and_route_has_its_own_bucket() -> None:
    limiter = RateLimiter(Uniform(RateLimit(rate=1.0, burst=1)), Clock())
    assert limiter.take("acme", "users", "users/ListUsers").allowed  # type: ignore[union-attr]
    assert not limiter.take("acme", "users", "users/ListUsers").allowed  # type: ignore[union-attr]
    assert limiter.take("acme", "users", "users/GetUser").allowed  # type: ignore[union-attr]
    assert limiter.take("globex", "users", "users/ListUsers").allowed  # type: ignore[union-attr]


def test_a_rate_of_zero_limits_nothing() -> None:
    assert RateLimiter(Uniform(RateLimit(rate=0, burst=1)), Clock()).take("acme", "users", "users/ListUsers") is None


def test_a_flood_of_tenants_cannot_grow_the_buckets_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(Uniform(RateLimit(rate=1.0, burst=2)), clock)
    limiter.take("acme", "users", "users/ListUsers")
    limiter.take("acme", "users", "users/ListUsers")
    for n in range(7):  # buckets not full again: none can be forgotten for being full
        limiter.take(f"tenant-{n}", "users", "users/ListUsers")
    assert not limiter.take("acme", "users", "users/ListUsers").allowed  # type: ignore[union-attr]  # used last: kept
    for n in range(7, 1000):  # the flood: every bucket in use, the least recently used go
        limiter.take(f"tenant-{n}", "users", "users/ListUsers")
        assert len(limiter._buckets) <= 10


LIMITS = """
rate = 10

[modules.orders]
rate = 4

[plans.free]
rate = 1
modules.orders = { rate = 0.5, burst = 3 }

[plans.partner]
modules.users = { rate = 50 }

[tenants]
globex = "free"
initech = "partner"
"""


def test_the_most_specific_limit_applies(tmp_path: Path) -> None:
    (tmp_path / "limits.toml").write_text(LIMITS)
    limits = read_rate_limits(tmp_path / "limits.toml")
    assert limits.for_call("acme", "users") == RateLimit(10, 20)  # the default; burst twice the rate
    assert limits.for_call("acme", "orders") == RateLimit(4, 8)  # the module's
    assert limits.for_call("globex", "users") == RateLimit(1, 2)  # the plan's
    assert limits.for_call("globex", "orders") == RateLimit(0.5, 3)  # the plan's for the module
    assert limits.for_call("initech", "users") == RateLimit(50, 100)
    assert limits.for_call("initech", "orders") == RateLimit(4, 8)  # a plan without its own rate: the module's


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rate = -1", "field rate: Input should be greater than or equal to 0"),
        ("rate = nan", "field rate: Input should be a finite number"),
        ("burst = 0", "field burst: Input should be greater than or equal to 1"),
        ("[modules.orders]\nburst = 2", "field modules.orders.rate: Field required"),
        ("[plans.free]\nburst = 2", "a burst without a rate"),
        ('[tenants]\nacme = "gold"', "[tenants] names the plan(s) gold, which [plans] does not define"),
        ("rat = 5", "field rat: Extra inputs are not permitted"),
        ("rate = ", "not valid TOML"),
    ],
)
def test_a_bad_limits_file_is_refused_naming_the_field(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "limits.toml").write_text(text)
    with pytest.raises(ValueError, match=re.escape(problem)) as raised:
        read_rate_limits(tmp_path / "limits.toml")
    assert str(raised.value).startswith(f"{tmp_path / 'limits.toml'}: ")


def test_a_missing_limits_file_is_named() -> None:
    with pytest.raises(ValueError, match="no such rate limits file"):
        read_rate_limits(Path("/nonexistent/limits.toml"))


def test_the_command_lines_default_replaces_the_files_once_used(tmp_path: Path) -> None:
    (tmp_path / "limits.toml").write_text(LIMITS)
    limits = read_rate_limits(tmp_path / "limits.toml")
    assert limits.for_call("acme", "users") == RateLimit(10, 20)
    replaced = limits.with_default(RateLimit(3, 4))
    assert replaced.for_call("acme", "users") == RateLimit(3, 4)
    assert replaced.for_call("globex", "orders") == RateLimit(0.5, 3)  # the plans stay
