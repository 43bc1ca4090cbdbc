"""SQLite for modules: a database file in the module's state folder, used from asyncio, whose
transactions can publish events through an outbox (`sdk._outbox`).

sqlite3 blocks, so every statement runs on one worker thread of the database's own (one
connection, one thread: SQLite's simplest safe use), never on the event loop. An asyncio
lock gives a transaction the connection to itself: another coroutine's statement waits
instead of landing inside it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from mesh.protocol.errors import MeshError
from sdk._outbox import Outbox, OutboxHost, StagedEvent, insert_staged

T = TypeVar("T")

Parameters = tuple[Any, ...] | dict[str, Any]


class Database:
    """One SQLite database of a module.

    db = await ctx.database("users.db", schema=SCHEMA)   # or Database.open(path, schema=...)
    await db.execute("INSERT INTO users VALUES (?, ?)", (user_id, name))
    rows = await db.query("SELECT * FROM users WHERE id = ?", (user_id,))
    async with db.transaction() as tx:
        await tx.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, user_id))
        tx.publish("balance.changed", BalanceChanged(user_id=user_id, amount=-amount))
    """

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._connection = connection
        self._executor = executor
        self._lock = asyncio.Lock()
        self.outbox: Outbox | None = None
        """The outbox of the events its transactions publish; None when opened without one."""

    @classmethod
    async def open(cls, path: Path, *, schema: str = "", outbox: OutboxHost | None = None) -> Database:
        """Open (creating) the database at `path` and run `schema` (idempotent DDL) in it.

        Args:
            path: The database file.
            schema: Idempotent DDL, e.g. CREATE TABLE IF NOT EXISTS.
            outbox: The module's context, to let transactions publish events (`ctx.database`
                passes it, and reports the outbox in metrics and health).

        Returns:
            The open database; with an outbox, its relay has started (events left by an
            earlier process are published first).
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.stem}")

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            if schema:
                connection.executescript(schema)
            return connection

        connection = await asyncio.get_running_loop().run_in_executor(executor, connect)
        database = cls(connection, executor)
        if outbox is not None:
            database.outbox = await Outbox.open(database._locked, outbox, path.stem)
        return database

    async def _on_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, self._connection)

    async def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        async with self._lock:
            return await self._on_thread(work)

    async def execute(self, sql: str, parameters: Parameters = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        return await self._locked(lambda connection: connection.execute(sql, parameters).rowcount)

    async def query(self, sql: str, parameters: Parameters = ()) -> list[sqlite3.Row]:
        """Run one query; returns every row."""
        return await self._locked(lambda connection: connection.execute(sql, parameters).fetchall())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction: its statements and the events it publishes commit together, or, when
        the block raises, none of them does (and the error propagates).

        Events are published after the commit by the outbox's relay, in commit order, each
        once (JetStream drops repeats by event id). Leaving the block waits up to
        `sdk._outbox.COMMIT_WAIT_SECONDS` for them to be acknowledged while NATS is
        reachable, so a caller usually finds them published; during an outage it returns at
        once and the relay publishes them when NATS is back. Keep other awaits (gRPC calls)
        out of the block: it holds the database for itself.

        Yields:
            The transaction, for `execute`, `query` and `publish`.
        """
        async with self._lock:
            await self._on_thread(lambda connection: connection.execute("BEGIN IMMEDIATE"))
            transaction = Transaction(self)
            try:
                yield transaction
                staged = transaction.staged
                last_seq = await self._on_thread(lambda connection: _commit(connection, staged))
            except BaseException:
                await asyncio.shield(self._on_thread(_rollback))
                raise
        if staged and self.outbox is not None:
            await self.outbox.committed(staged, last_seq)

    async def close(self) -> None:
        """Stop the outbox's relay and close the database."""
        if self.outbox is not None:
            await self.outbox.close()
        await self._locked(lambda connection: connection.close())
        self._executor.shutdown(wait=False)


class Transaction:
    """The statements and events of one `Database.transaction()` block."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self.staged: list[StagedEvent] = []

    async def execute(self, sql: str, parameters: Parameters = ()) -> int:
        """Run one statement in the transaction; returns the number of rows it changed (0 for a
        conditional UPDATE whose condition failed)."""
        return await self._database._on_thread(lambda connection: connection.execute(sql, parameters).rowcount)

    async def query(self, sql: str, parameters: Parameters = ()) -> list[sqlite3.Row]:
        """Run one query in the transaction; returns every row."""
        return await self._database._on_thread(lambda connection: connection.execute(sql, parameters).fetchall())

    def publish(
        self,
        event_type: str,
        payload: Any,
        *,
        tenant: str | None = None,
        company: str | None = None,
        subject: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Publish an event if, and when, the transaction commits (durably, through the outbox).

        The checks are those of `ctx.publish`, made now: a refused event raises here, and
        the transaction rolls back unless the block catches it.

        Args:
            event_type: `entity.action`, declared under [events] publishes.
            payload: A pydantic model, a protobuf message, bytes, or plain JSON data.
            tenant: The tenant the event belongs to.
            company: The company within the tenant.
            subject: What the event is about (CloudEvents `subject`).
            event_id: The event's id; a new one if None.

        Returns:
            The event's id.

        Raises:
            MeshError: MODULE_UNAVAILABLE when the database has no outbox (open it with
                `ctx.database`); UNDECLARED_EVENT or INVALID_EVENT as `ctx.publish` does.
        """
        outbox = self._database.outbox
        if outbox is None:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                "this database has no outbox, so its transactions cannot publish; open it with "
                "`await ctx.database(name, schema=...)` (or Database.open(..., outbox=ctx))",
            )
        staged = outbox.stage(event_type, payload, tenant=tenant, company=company, subject=subject, event_id=event_id)
        self.staged.append(staged)
        return staged.event_id


def _commit(connection: sqlite3.Connection, staged: list[StagedEvent]) -> int:
    last_seq = insert_staged(connection, staged) if staged else 0
    connection.execute("COMMIT")
    return last_seq


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")
