"""How a gateway answers and where it listens: what the command line decides, kept apart from
the HTTP server so that reading the options imports no HTTP library."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.gateway.limit_plans import RateLimits
from mesh.gateway.limits import RateLimit
from mesh.protocol.tokens import TokenVerifier

DEFAULT_LISTEN = "127.0.0.1:8080"
LISTEN_ENV = "MESH_GATEWAY_LISTEN"
"""Where `mesh up`'s gateway listens when --gateway-listen is not given."""
RATE_LIMITS_ENV = "MESH_GATEWAY_RATE_LIMITS"
"""The limits file, when --rate-limits is not given."""
DEFAULT_RATE_LIMIT = RateLimit(rate=100.0, burst=200)
"""Per tenant and route: generous for people and apps, a brake on a runaway client."""


@dataclass(frozen=True)
class LimitsBus:
    """The NATS the gateway replicas share their rate limits through (mesh.gateway.limit_sharing)."""

    servers: tuple[str, ...]
    user: str = ""
    """The login (GATEWAY_USER of mesh.protocol.nats_access); empty for a NATS without users."""
    password: str = ""


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway answers.

    Attributes:
        tokens: Verifies callers' bearer tokens; None for a plaintext mesh (--insecure).
        call_timeout_seconds: The deadline of each call to a module.
        max_body_bytes: The largest request body taken (413 beyond).
        allowed_origins: The origins a browser may call from (CORS); empty: none.
        rate_limits: The calls a second each tenant may make of each route of each module
            (mesh.gateway.limit_plans).
        limits_bus: The NATS to share the rate limits with the other replicas through; None:
            this gateway's limits are its own.
    """

    tokens: TokenVerifier | None
    call_timeout_seconds: float = 30.0
    max_body_bytes: int = 1024 * 1024
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    rate_limits: RateLimits = field(default_factory=lambda: RateLimits.uniform(DEFAULT_RATE_LIMIT))
    limits_bus: LimitsBus | None = None


def listen_address(text: str) -> tuple[str, int]:
    """("host", port) of "host:port" ("[::1]:8080" for IPv6; port 0: any free port).

    Raises:
        ValueError: `text` is not host:port.
    """
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not host:port, e.g. {DEFAULT_LISTEN} (port 0: any free port)")
    return host.strip("[]") or "0.0.0.0", int(port)
