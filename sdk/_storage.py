"""SQLite for modules: a database file in the module's state folder, used from asyncio.

sqlite3 blocks, so every statement runs on one worker thread of the database's own (one
connection, one thread: SQLite's simplest safe use), never on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class Database:
    """One SQLite database of a module.

    db = await Database.open(ctx.state_dir / "users.db", schema=SCHEMA)
    await db.execute("INSERT INTO users VALUES (?, ?)", (user_id, name))
    rows = await db.query("SELECT * FROM users WHERE id = ?", (user_id,))
    """

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._connection = connection
        self._executor = executor

    @classmethod
    async def open(cls, path: Path, *, schema: str = "") -> Database:
        """Open (creating) the database at `path` and run `schema` (idempotent DDL) in it."""
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
        return cls(connection, executor)

    async def _run(self, work: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    async def execute(self, sql: str, parameters: tuple[Any, ...] | dict[str, Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        changed: int = await self._run(lambda: self._connection.execute(sql, parameters).rowcount)
        return changed

    async def query(self, sql: str, parameters: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run one query; returns every row."""
        rows: list[sqlite3.Row] = await self._run(lambda: self._connection.execute(sql, parameters).fetchall())
        return rows

    async def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run statements all or nothing."""

        def run() -> None:
            with self._connection:
                self._connection.execute("BEGIN")
                for sql, parameters in statements:
                    self._connection.execute(sql, parameters)

        await self._run(run)

    async def close(self) -> None:
        await self._run(self._connection.close)
        self._executor.shutdown(wait=False)
