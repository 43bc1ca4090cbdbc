"""A module's health verdict: its status and the components it checked.

Apart from the module class so that the parts of the SDK that report health (the outbox,
the runtime) need not import the module class, which imports the context.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mesh.v1 import health_pb2


class HealthStatus(enum.IntEnum):
    """How well a module or one of its components works."""

    HEALTHY = health_pb2.HEALTH_STATUS_HEALTHY
    DEGRADED = health_pb2.HEALTH_STATUS_DEGRADED
    UNHEALTHY = health_pb2.HEALTH_STATUS_UNHEALTHY


@dataclass(frozen=True)
class ComponentHealth:
    """The health of one part of a module, e.g. its database.

    Args:
        name: The component's name, e.g. "database".
        status: How well it works.
        latency_ms: How long its check took.
        message: What is wrong, when something is.
    """

    name: str
    status: HealthStatus = HealthStatus.HEALTHY
    latency_ms: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class Health:
    """A module's own health verdict, returned by `Module.health()`.

    Args:
        status: The overall verdict; `Health.of(components)` derives it as the worst component.
        components: The parts checked.
        message: A short explanation when the status is not HEALTHY.
    """

    status: HealthStatus = HealthStatus.HEALTHY
    components: tuple[ComponentHealth, ...] = field(default_factory=tuple)
    message: str = ""

    @classmethod
    def of(cls, *components: ComponentHealth, message: str = "") -> Health:
        """A verdict as bad as the worst of `components`."""
        worst = max((c.status for c in components), default=HealthStatus.HEALTHY)
        return cls(status=worst, components=components, message=message)
