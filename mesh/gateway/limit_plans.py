"""Which rate limit applies to a tenant's calls of a module: the gateway's limits file
(`--rate-limits FILE`, TOML), read when the gateway starts.

    rate = 100                  # calls a second of each route by each tenant: the default
    burst = 200                 # calls at once above the rate (default: twice the rate)

    [modules.orders]            # the routes of module orders
    rate = 20

    [plans.free]                # the tenants on plan "free"
    rate = 5
    modules.orders = { rate = 1, burst = 2 }

    [tenants]
    globex = "free"             # each tenant's plan; a tenant not named here has none

The most specific limit applies: the tenant's plan's for the module, the plan's, the module's,
the default. A rate of 0 limits nothing.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mesh.gateway.limits import RateLimit
from mesh.protocol.toml_files import read_toml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(_Strict):
    """A rate, and the burst above it (twice the rate, at least 1, when not given)."""

    rate: float = Field(ge=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, ge=1)

    @cached_property
    def rate_limit(self) -> RateLimit:
        return RateLimit(self.rate, self.burst if self.burst is not None else max(1, math.ceil(2 * self.rate)))


class Plan(_Strict):
    """The limits of the tenants on one plan: for every module, and for some modules."""

    rate: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, ge=1)
    modules: dict[str, Limit] = Field(default_factory=dict)

    @cached_property
    def limit(self) -> RateLimit | None:
        """Its limit for the modules it does not name; None: theirs, or the default."""
        return None if self.rate is None else Limit(rate=self.rate, burst=self.burst).rate_limit

    @model_validator(mode="after")
    def _burst_needs_a_rate(self) -> Plan:
        if self.burst is not None and self.rate is None:
            raise ValueError("a burst without a rate: give the plan's rate too")
        return self


class RateLimits(_Strict):
    """The limits file: the default, per module, per plan, and each tenant's plan."""

    rate: float = Field(default=100.0, ge=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, ge=1)
    modules: dict[str, Limit] = Field(default_factory=dict)
    plans: dict[str, Plan] = Field(default_factory=dict)
    tenants: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _plans_exist(self) -> RateLimits:
        unknown = sorted({plan for plan in self.tenants.values() if plan not in self.plans})
        if unknown:
            raise ValueError(
                f"[tenants] names the plan(s) {', '.join(unknown)}, which [plans] does not define; "
                f"define them (e.g. [plans.{unknown[0]}] rate = 10) or correct the names"
            )
        return self

    @classmethod
    def uniform(cls, limit: RateLimit) -> RateLimits:
        """The same limit for every tenant and module."""
        return cls(rate=limit.rate, burst=limit.burst)

    @cached_property
    def default(self) -> RateLimit:
        return Limit(rate=self.rate, burst=self.burst).rate_limit

    @cached_property
    def limits_nothing(self) -> bool:
        """Whether every limit is 0: no call is limited (nor the limits shared)."""
        plan_limits = [plan.limit for plan in self.plans.values() if plan.limit is not None]
        module_limits = [
            limit.rate_limit
            for limits in (self.modules, *(plan.modules for plan in self.plans.values()))
            for limit in limits.values()
        ]
        return all(limit.unlimited for limit in (self.default, *plan_limits, *module_limits))

    def for_call(self, tenant: str, module: str) -> RateLimit:
        """The limit of `tenant`'s calls of each route of `module` (on every call: lookups of
        limits made once)."""
        plan = self.plans.get(self.tenants.get(tenant, ""))
        if plan is not None:
            if module in plan.modules:
                return plan.modules[module].rate_limit
            if plan.limit is not None:
                return plan.limit
        if module in self.modules:
            return self.modules[module].rate_limit
        return self.default

    def with_default(self, limit: RateLimit) -> RateLimits:
        """These limits with another default (--rate-limit and --rate-burst)."""
        # Made anew, not model_copy'd: a copy would keep the cached limits of these.
        return RateLimits.model_validate({**self.model_dump(), "rate": limit.rate, "burst": limit.burst})


def read_rate_limits(path: Path) -> RateLimits:
    """The limits file at `path`.

    Raises:
        ValueError: the file cannot be read or is not a limits file: one line per problem,
            naming the file and the field.
    """
    data = read_toml(path, "rate limits file")  # a TomlFileError is a ValueError
    try:
        return RateLimits.model_validate(data)
    except ValidationError as error:
        lines = [
            f"{path}: field {'.'.join(str(part) for part in problem['loc']) or '(top)'}: {problem['msg']}"
            for problem in error.errors()[:20]
        ]
        raise ValueError("\n".join(lines)) from None
