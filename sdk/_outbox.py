"""The transactional outbox: an event is written to a table in the same SQLite transaction
as the state change it announces, and relayed to JetStream by a background task.

Publishing after the commit loses the event when NATS is away or the process dies in
between; publishing before it announces a change that may still roll back. With the outbox
both are one commit, and the relay publishes each row until JetStream acknowledges it, with
the event's id as `Nats-Msg-Id` (so a row published twice, e.g. by a process that died
before deleting it, is stored once), deleting it only then. One relay per database keeps the
rows' order; rows left by an earlier process are relayed when the database is opened again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message as ProtoMessage
from opentelemetry import context as otel_context
from opentelemetry import propagate

from mesh.protocol.errors import MeshError
from sdk._health import ComponentHealth, HealthStatus
from sdk.events import codec_for

T = TypeVar("T")

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS mesh_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    payload_kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    company TEXT NOT NULL,
    subject TEXT NOT NULL,
    trace TEXT NOT NULL,
    created REAL NOT NULL,
    refused TEXT
);
"""
"""`payload_kind` is json, bytes or proto:<message full name>; `trace` the writer's W3C trace
context (JSON), so the publish span joins the request's trace; `refused` says why the
publisher refuses a row for good (it is then kept, and skipped)."""

INSERT_SQL = (
    "INSERT INTO mesh_outbox (event_id, event_type, payload, payload_kind, tenant, company, subject, trace, created) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

OUTBOX_MAX_AGE_SECONDS = 30.0
"""An event waiting longer than this makes the outbox's health DEGRADED."""

COMMIT_WAIT_SECONDS = 1.0
"""How long a committing transaction waits for its events to be acknowledged, while the relay
is keeping up; past that (or while NATS is away) it returns and the relay carries on."""

_BATCH = 100
_RETRY_FIRST_SECONDS = 0.1
_RETRY_MAX_SECONDS = 5.0

_log = logging.getLogger("sdk.outbox")

Runner = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]


class OutboxHost(Protocol):
    """What an outbox needs from the module's context (`sdk.Context` is one)."""

    @property
    def name(self) -> str: ...
    def check_event(self, event_type: str, payload: Any, *, tenant: str | None = None) -> Any: ...
    async def publish(
        self,
        event_type: str,
        payload: Any,
        *,
        tenant: str | None = None,
        company: str | None = None,
        subject: str | None = None,
        event_id: str | None = None,
        durable: bool = True,
    ) -> str: ...
    def spawn(self, work: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]: ...


@dataclass(frozen=True)
class StagedEvent:
    """One event checked and encoded by `Transaction.publish`, inserted at commit."""

    event_id: str
    row: tuple[Any, ...]


@dataclass(frozen=True)
class _Row:
    seq: int
    event_id: str
    event_type: str
    payload: bytes
    payload_kind: str
    tenant: str
    company: str
    subject: str
    trace: str
    created: float


class Outbox:
    """The outbox table of one database and the relay that empties it."""

    def __init__(self, run: Runner[Any], host: OutboxHost, label: str) -> None:
        self._run = run
        self._host = host
        self.label = label
        """Names the outbox in health and logs: the database file's stem."""
        self._wake = asyncio.Event()
        self._published = asyncio.Condition()
        self._done_through = 0
        self._stalled = False
        self._depth = 0
        self._refused = 0
        self._oldest: float | None = None
        self._relay: asyncio.Task[Any] | None = None

    @classmethod
    async def open(cls, run: Runner[Any], host: OutboxHost, label: str) -> Outbox:
        """Create the table if needed, count what an earlier process left, and start relaying."""
        outbox = cls(run, host, label)

        def prepare(connection: sqlite3.Connection) -> tuple[int, int, float | None]:
            connection.executescript(OUTBOX_SCHEMA)
            pending, oldest = connection.execute(
                "SELECT COUNT(*), MIN(created) FROM mesh_outbox WHERE refused IS NULL"
            ).fetchone()
            (refused,) = connection.execute("SELECT COUNT(*) FROM mesh_outbox WHERE refused IS NOT NULL").fetchone()
            return int(pending), int(refused), oldest

        outbox._depth, outbox._refused, outbox._oldest = await run(prepare)
        outbox._relay = host.spawn(outbox._relay_forever(), name=f"outbox:{label}")
        return outbox

    # --- writing (inside a transaction) ---------------------------------------------

    def stage(
        self,
        event_type: str,
        payload: Any,
        *,
        tenant: str | None,
        company: str | None,
        subject: str | None,
        event_id: str | None,
    ) -> StagedEvent:
        """Check `payload` as `ctx.publish` would and encode it into an outbox row."""
        checked = self._host.check_event(event_type, payload, tenant=tenant)
        event_id = event_id or uuid.uuid4().hex
        trace: dict[str, str] = {}
        propagate.inject(trace)
        row = (
            event_id,
            event_type,
            codec_for(type(checked)).encode(checked),
            _kind_of(checked),
            tenant or "",
            company or "",
            subject or "",
            json.dumps(trace),
            time.time(),
        )
        return StagedEvent(event_id, row)

    async def committed(self, staged: list[StagedEvent], last_seq: int) -> None:
        """Count rows committed up to `last_seq`, wake the relay, and wait (briefly, and only
        while the relay keeps up) until they are acknowledged."""
        self._depth += len(staged)
        if self._oldest is None:
            self._oldest = staged[0].row[-1]
        self._wake.set()
        if self._stalled:
            return
        try:
            async with asyncio.timeout(COMMIT_WAIT_SECONDS), self._published:
                await self._published.wait_for(lambda: self._done_through >= last_seq)
        except TimeoutError:
            self._stalled = True

    # --- relaying -------------------------------------------------------------------

    async def _relay_forever(self) -> None:
        delay = _RETRY_FIRST_SECONDS
        while True:
            self._wake.clear()
            rows = await self._run(_pending_rows)
            self._oldest = rows[0].created if rows else None
            if not rows:
                await self._wake.wait()
                continue
            for row in rows:
                if not await self._relay_one(row):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_SECONDS)
                    break
                delay = _RETRY_FIRST_SECONDS

    async def _relay_one(self, row: _Row) -> bool:
        """Publish one row and delete it (or set it aside when refused for good); False when
        it must be tried again later, before any row after it."""
        try:
            await self._publish(row)
        except MeshError as error:
            if error.reason == "MODULE_UNAVAILABLE":  # NATS stayed away past the publisher's retries
                self._retry_later(row, error)
                return False
            await self._refuse(row, error)
            return True
        except Exception as error:  # NATS away or closed under the publish
            self._retry_later(row, error)
            return False
        await self._run(functools.partial(_delete, seq=row.seq))
        await self._acknowledged(row.seq)
        return True

    async def _publish(self, row: _Row) -> None:
        token = otel_context.attach(propagate.extract(json.loads(row.trace)))
        try:
            await self._host.publish(
                row.event_type,
                _decoded(row.payload, row.payload_kind),
                tenant=row.tenant or None,
                company=row.company or None,
                subject=row.subject or None,
                event_id=row.event_id,
            )
        finally:
            otel_context.detach(token)

    def _retry_later(self, row: _Row, error: BaseException) -> None:
        self._stalled = True
        _log.warning(
            "module %s: outbox %s cannot publish event %s (%s) yet: %s; retrying",
            self._host.name,
            self.label,
            row.event_id,
            row.event_type,
            error,
        )

    async def _refuse(self, row: _Row, error: MeshError) -> None:
        _log.error(
            "module %s: outbox %s: the publisher refuses event %s (%s) for good: %s; it stays in table "
            "mesh_outbox with the reason, and the outbox's health is DEGRADED",
            self._host.name,
            self.label,
            row.event_id,
            row.event_type,
            error.message,
        )
        reason = f"{error.reason}: {error.message}"[:1000]
        await self._run(functools.partial(_set_aside, seq=row.seq, reason=reason))
        self._refused += 1
        await self._acknowledged(row.seq)

    async def _acknowledged(self, seq: int) -> None:
        self._depth -= 1
        self._stalled = False
        async with self._published:
            self._done_through = seq
            self._published.notify_all()

    # --- what metrics and health read ----------------------------------------------

    @property
    def depth(self) -> int:
        """How many events wait to be published."""
        return self._depth

    @property
    def oldest_age_seconds(self) -> float:
        """How long the oldest waiting event has waited; 0 when none waits."""
        return 0.0 if self._oldest is None or not self._depth else max(time.time() - self._oldest, 0.0)

    def health(self, max_age_seconds: float = OUTBOX_MAX_AGE_SECONDS) -> ComponentHealth:
        """DEGRADED when an event waited longer than `max_age_seconds` or was refused for good."""
        name = f"outbox:{self.label}"
        age = self.oldest_age_seconds
        if age > max_age_seconds:
            return ComponentHealth(
                name,
                HealthStatus.DEGRADED,
                message=f"{self._depth} event(s) not yet published, the oldest for {age:.0f} s; is NATS reachable?",
            )
        if self._refused:
            return ComponentHealth(
                name,
                HealthStatus.DEGRADED,
                message=f"{self._refused} event(s) refused by the publisher, kept in table mesh_outbox (see the log)",
            )
        return ComponentHealth(name)

    async def close(self) -> None:
        """Stop relaying; what is left is relayed when the database is opened again."""
        if self._relay is not None:
            self._relay.cancel()
            await asyncio.gather(self._relay, return_exceptions=True)
            self._relay = None


def insert_staged(connection: sqlite3.Connection, staged: list[StagedEvent]) -> int:
    """Insert staged events (on the database's thread, inside its transaction); returns the
    last row's sequence number."""
    last = 0
    for event in staged:
        last = connection.execute(INSERT_SQL, event.row).lastrowid or last
    return last


def _pending_rows(connection: sqlite3.Connection) -> list[_Row]:
    cursor = connection.execute(
        "SELECT seq, event_id, event_type, payload, payload_kind, tenant, company, subject, trace, created "
        "FROM mesh_outbox WHERE refused IS NULL ORDER BY seq LIMIT ?",
        (_BATCH,),
    )
    return [_Row(*row) for row in cursor.fetchall()]


def _delete(connection: sqlite3.Connection, *, seq: int) -> None:
    connection.execute("DELETE FROM mesh_outbox WHERE seq = ?", (seq,))


def _set_aside(connection: sqlite3.Connection, *, seq: int, reason: str) -> None:
    connection.execute("UPDATE mesh_outbox SET refused = ? WHERE seq = ?", (reason, seq))


def _kind_of(payload: Any) -> str:
    if isinstance(payload, ProtoMessage):
        return f"proto:{payload.DESCRIPTOR.full_name}"
    if isinstance(payload, bytes | bytearray):
        return "bytes"
    return "json"


def _decoded(payload: bytes, kind: str) -> Any:
    """The payload as `ctx.publish` takes it: JSON data (validated again into the declared
    model), bytes, or the protobuf message of the recorded type."""
    if kind == "bytes":
        return payload
    if kind.startswith("proto:"):
        descriptor = descriptor_pool.Default().FindMessageTypeByName(kind.removeprefix("proto:"))
        return message_factory.GetMessageClass(descriptor).FromString(payload)
    return json.loads(payload)
