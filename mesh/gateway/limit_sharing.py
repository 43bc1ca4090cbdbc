"""Rate limits shared between gateway replicas through NATS: each replica tells the others,
every SHARE_INTERVAL_SECONDS, the calls it admitted since (per tenant, module and route), on
the core NATS subject `mesh.gateway.limits`, and deducts from its own buckets the calls they
admitted. Every replica's buckets thus drain at the calls of all of them, and a tenant limited
to 10 calls a second gets about 10 whichever replicas its calls reach.

Why reports rather than one counter in NATS per call (a key-value bucket, say): a call would
wait for a NATS round trip, doubling the gateway's cost, and a NATS outage would have to
either refuse every call or limit none. Reports cost one small message per replica and
interval, and while NATS is away each replica simply limits alone.

Accuracy: a replica learns of the others' calls one interval (0.2 s) plus NATS latency
late. Within that lag each replica admits from what it knows is left, so over any window a
tenant may get, above its limit, up to what the other replicas admitted during the last lag:
at most their bursts at the very first calls (N replicas, burst B: up to N x B at once), and
about (N-1) x rate x 0.2 s while the bucket is being drained steadily. What was admitted
beyond the limit is paid back: a bucket drained by the reports goes below empty, and no call
fits until it has refilled. A report lost (NATS away, core NATS does not keep messages) is
calls never deducted elsewhere: while NATS is away, each replica allows its own full rate.
Replicas are expected to share one limits file; each applies its own limits to what it hears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.gateway.limits import RateLimiter, Usage
from mesh.gateway.metrics import GatewayMetrics
from mesh.gateway.settings import LimitsBus
from mesh.protocol.errors import excerpt
from mesh.protocol.names import RATE_LIMIT_USAGE_SUBJECT

_log = logging.getLogger("mesh.gateway")

SHARE_INTERVAL_SECONDS = 0.2
"""How often a replica reports the calls it admitted: the lag of the others' view of a bucket."""
MAX_ENTRIES_PER_REPORT = 250
"""Keys (tenant, module, route) per message; more go in several (NATS takes 1 MiB a message)."""
RECONNECT_WAIT_SECONDS = 1.0
"""How long the gateway waits between attempts to reach NATS."""

_Name = Annotated[str, Field(min_length=1, max_length=256)]
_Route = Annotated[str, Field(min_length=1, max_length=1024)]
_Calls = Annotated[int, Field(ge=1, le=1_000_000)]


class UsageReport(BaseModel):
    """What one replica admitted since its last report; JSON on `mesh.gateway.limits`:

    {"replica": "5f0c…", "admitted": [["acme", "orders", "orders/orders.v1.Orders/PlaceOrder", 3]]}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    replica: str = Field(min_length=1, max_length=64)
    """The reporting replica (a random id each run): a replica ignores its own reports."""
    admitted: list[tuple[_Name, _Name, _Route, _Calls]] = Field(max_length=MAX_ENTRIES_PER_REPORT)
    """(tenant, module, route, calls admitted)."""


def reports(replica: str, admitted: Usage) -> Iterator[bytes]:
    """The messages that tell `admitted`, MAX_ENTRIES_PER_REPORT keys each."""
    entries = [(tenant, module, route, calls) for (tenant, module, route), calls in admitted.items()]
    for start in range(0, len(entries), MAX_ENTRIES_PER_REPORT):
        chunk = entries[start : start + MAX_ENTRIES_PER_REPORT]
        yield UsageReport(replica=replica, admitted=chunk).model_dump_json().encode()


class LimitSharing:
    """One replica's part: reports what `limiter` admitted, deducts what the others report.

    Args:
        limiter: This replica's buckets (made `shared`, so that it counts what it admits).
        bus: The NATS servers and login to share through.
        metrics: Where the calls heard, the reports refused and the connection are counted.
    """

    def __init__(self, limiter: RateLimiter, bus: LimitsBus, metrics: GatewayMetrics) -> None:
        self.replica = uuid.uuid4().hex
        self._limiter = limiter
        self._bus = bus
        self._metrics = metrics
        self._client = NatsClient()
        self._run_task: asyncio.Task[None] | None = None
        self._unreachable_since_said = False
        self._errors_said: set[str] = set()

    def start(self) -> None:
        """Connect (retrying until NATS answers: meanwhile this replica limits alone) and share."""
        self._run_task = asyncio.create_task(self._run(), name="gateway-shares-rate-limits")

    async def stop(self) -> None:
        """Send the last report, and leave NATS."""
        if self._run_task is not None:
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        if self._client.is_connected:
            await self._report()
            with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                await self._client.flush(timeout=1)
        # nats-py asserts when closing a client whose connect() gave up before it set one up (a
        # URL it cannot use): there is nothing to close then.
        with contextlib.suppress(nats.errors.Error, OSError, TimeoutError, AssertionError):
            await self._client.close()

    async def _run(self) -> None:
        try:
            await self._client.connect(**self._connect_options())
            self._connected_now()
            await self._client.subscribe(RATE_LIMIT_USAGE_SUBJECT, cb=self._heard)
            while True:
                await asyncio.sleep(SHARE_INTERVAL_SECONDS)
                await self._report()
        except Exception as error:  # a URL nats-py cannot use, say: said, and the gateway serves on
            self._metrics.sharing(False)
            _log.error(
                "gateway: stopped sharing rate limits through NATS at %s (%s); they are this replica's alone",
                self._where(),
                error or type(error).__name__,
            )

    def _connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "servers": list(self._bus.servers),
            "name": f"mesh-gateway-{self.replica[:8]}",
            "no_echo": True,  # its own reports are not for itself
            "connect_timeout": 2,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # also the first connection: retried until NATS answers
            "reconnect_time_wait": RECONNECT_WAIT_SECONDS,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if self._bus.user:
            options["user"] = self._bus.user
            options["password"] = self._bus.password
        return options

    async def _report(self) -> None:
        """Tell the others what was admitted since the last report. While NATS is away the
        report is dropped: the others' buckets would be charged late for what has refilled."""
        admitted = self._limiter.admitted()
        if not admitted:
            return
        if not self._client.is_connected:
            self._metrics.unshared_calls(sum(admitted.values()))
            return
        try:
            for report in reports(self.replica, admitted):
                await self._client.publish(RATE_LIMIT_USAGE_SUBJECT, report)
        except (nats.errors.Error, OSError) as error:
            _log.warning("gateway: a rate-limit report to the other replicas was lost: %s", error)

    async def _heard(self, message: Msg) -> None:
        """Another replica's report: its calls come off this replica's buckets."""
        try:
            report = UsageReport.model_validate_json(message.data)
        except ValidationError as error:
            self._metrics.share_refused()
            _log.warning(
                "gateway: ignored a message on %s that is no rate-limit report (%s): %s",
                RATE_LIMIT_USAGE_SUBJECT,
                excerpt(message.data),
                excerpt(str(error)),
            )
            return
        if report.replica == self.replica:
            return
        for tenant, module, route, calls in report.admitted:
            self._limiter.deduct(tenant, module, route, calls)
        self._metrics.shared_calls(sum(entry[3] for entry in report.admitted))

    def _connected_now(self) -> None:
        self._metrics.sharing(True)
        self._unreachable_since_said = False
        _log.info("gateway: sharing rate limits with the other replicas through NATS (%s)", self._where())

    async def _on_error(self, error: Exception) -> None:
        """nats-py's errors: while it (re)connects, said once per outage, not per attempt; once
        connected (a permission refused, say), each different one once."""
        why = str(error) or type(error).__name__
        if self._client.is_connected:
            if why not in self._errors_said and len(self._errors_said) < 100:
                self._errors_said.add(why)
                _log.error("gateway: NATS refused what sharing rate limits needs: %s", why)
            return
        if self._unreachable_since_said:
            return
        self._unreachable_since_said = True
        _log.warning(
            "gateway: cannot reach NATS at %s (%s); rate limits are this replica's alone until it answers",
            self._where(),
            why,
        )

    async def _on_disconnected(self) -> None:
        self._metrics.sharing(False)

    async def _on_reconnected(self) -> None:
        self._connected_now()

    def _where(self) -> str:
        return ", ".join(self._bus.servers)
