"""Rate limits: a token bucket per tenant and route, in this gateway process.

Each (tenant, module, method) has a bucket of `burst` calls that refills at `rate` calls a
second, as the limits file says for that tenant and module (mesh.gateway.limit_plans); a call
that finds it empty is answered 429 with `Retry-After` (whole seconds until a call fits again)
and the `RateLimit-*` headers of the IETF draft on every answer. Written here
rather than taken from a library: the ones for aiohttp key by client address, not by the
tenant a token proves, and a bucket is a dozen lines.

Replicas share their buckets through NATS (mesh.gateway.limit_sharing): a limiter made
`shared` keeps count of the calls it admits, for the replicas to hear, and deducts what they
admitted (`deduct`), so that a tenant's bucket drains at the calls of all of them. A bucket
so drained may go below empty: the calls the replicas admitted before they heard of each
other are paid back out of what refills.

Buckets are dropped once there are MAX_BUCKETS, the full ones first, then the least recently
used, so that tenants named in a flood (x-tenant-id, in a plaintext mesh) cannot grow memory
without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

MAX_BUCKETS = 100_000
"""How many buckets are kept at most; past that, the full ones (of idle keys) are dropped."""


@dataclass(frozen=True)
class RateLimit:
    """`rate` calls a second with bursts of up to `burst`; a rate of 0 limits nothing."""

    rate: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


class LimitOf(Protocol):
    """The limit of a tenant's calls of a module's routes."""

    def for_call(self, tenant: str, module: str) -> RateLimit: ...


@dataclass(frozen=True)
class Uniform:
    """The same limit for every tenant and module."""

    limit: RateLimit

    def for_call(self, tenant: str, module: str) -> RateLimit:
        return self.limit


@dataclass(frozen=True)
class Verdict:
    """Whether a call may go on, and what its answer says of the limit."""

    allowed: bool
    rate: float
    limit: int
    remaining: int
    reset_seconds: int
    """Whole seconds until the bucket is full again (until a call fits, when refused)."""

    def headers(self) -> dict[str, str]:
        found = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            found["Retry-After"] = str(self.reset_seconds)
        return found


Usage = dict[tuple[str, str, str], int]
"""Calls admitted, by (tenant, module, route)."""


class RateLimiter:
    """The buckets of one gateway.

    Args:
        limits: The limit of each tenant's calls of each module (a RateLimit for all: Uniform).
        clock: Seconds, monotonic (a test may give its own).
        shared: Keep count of the calls admitted, for the other replicas (`admitted`).
    """

    def __init__(self, limits: LimitOf, clock: Callable[[], float] = time.monotonic, *, shared: bool = False) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float, RateLimit]] = {}
        self._admitted: Usage | None = {} if shared else None

    def take(self, tenant: str, module: str, route: str) -> Verdict | None:
        """Take one call from the bucket of (tenant, route), a route of `module`; None when
        the tenant's calls of the module are not limited."""
        limit = self.limits.for_call(tenant, module)
        if limit.unlimited:
            return None
        now = self._clock()
        tokens = self._refilled(tenant, route, limit, now)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
            if self._admitted is not None:
                key = (tenant, module, route)
                self._admitted[key] = self._admitted.get(key, 0) + 1
        self._buckets[(tenant, route)] = (tokens, now, limit)
        rate = limit.rate
        if allowed:
            reset = math.ceil((limit.burst - tokens) / rate)  # until the bucket is full again
        else:
            reset = max(1, math.ceil((1.0 - tokens) / rate))  # until one call fits
        return Verdict(allowed, rate, limit.burst, max(0, int(tokens)), reset)

    def deduct(self, tenant: str, module: str, route: str, calls: int) -> None:
        """Take `calls` that another replica admitted from the bucket of (tenant, route), below
        empty if need be; nothing when the tenant's calls of the module are not limited here."""
        limit = self.limits.for_call(tenant, module)
        if limit.unlimited:
            return
        now = self._clock()
        self._buckets[(tenant, route)] = (self._refilled(tenant, route, limit, now) - calls, now, limit)

    def admitted(self) -> Usage:
        """The calls admitted since the last time this was asked (none unless `shared`)."""
        if not self._admitted:
            return {}
        admitted, self._admitted = self._admitted, {}
        return admitted

    def _refilled(self, tenant: str, route: str, limit: RateLimit, now: float) -> float:
        """The tokens of (tenant, route)'s bucket now, taken out of the buckets: the caller puts
        it back, last, so that the least recently used come first."""
        burst = float(limit.burst)
        tokens, at, _was = self._buckets.pop((tenant, route), (burst, now, limit))
        if len(self._buckets) >= MAX_BUCKETS:
            self._forget_full(now)
        return min(burst, tokens + (now - at) * limit.rate)

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that are full again (forgetting them changes nothing); if that is not
        enough, the least recently used (a flood of tenants: each of those starts full again)."""
        self._buckets = {
            key: (tokens, at, limit)
            for key, (tokens, at, limit) in self._buckets.items()
            if tokens + (now - at) * limit.rate < limit.burst
        }
        for key in list(self._buckets)[: max(0, len(self._buckets) - MAX_BUCKETS // 2)]:
            del self._buckets[key]
