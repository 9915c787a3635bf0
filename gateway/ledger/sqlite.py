"""The ledger in a SQLite file (the default): stdlib sqlite3 on one thread of its own, so the event
loop never waits on the disk. WAL lets every worker on the host share the file: each batch is one
`BEGIN IMMEDIATE` transaction, so writers queue (for `busy_timeout`) instead of deadlocking on a
read lock they would have to upgrade. WAL needs shared memory on one machine: replicas on several
hosts need PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from gateway.ledger import EVENT_COLUMNS, UsageEvent
from gateway.ledger import sql as SQL

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000


class SqliteLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ledger-sqlite")

    async def _on_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._db is None:
                self._db = self._connect()
            return work(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SQL.SCHEMA:
                db.execute(statement)
            db.execute(f"CREATE TEMP TABLE batch AS SELECT * FROM usage_event WHERE false")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db

    async def open(self) -> None:
        await self._on_thread(lambda db: None)

    async def write(self, events: Sequence[UsageEvent]) -> int:
        rows = [event.row() for event in events]

        def work(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM batch")
                db.executemany(f"INSERT INTO batch VALUES ({', '.join('?' * len(EVENT_COLUMNS))})", rows)
                db.execute(SQL.rollup("batch", "id NOT IN (SELECT id FROM usage_event)"))
                new = db.execute("INSERT OR IGNORE INTO usage_event SELECT * FROM batch").rowcount
                db.execute("COMMIT")
                return new
            except BaseException:
                db.execute("ROLLBACK")
                raise

        return await self._on_thread(work)

    async def spent_nano(self, key_name: str, since: float) -> int:
        query = SQL.spent(since).format("?", "?")
        return await self._on_thread(lambda db: int(db.execute(query, (key_name, since)).fetchone()[0]))

    async def prune(self, before: float) -> int:
        return await self._on_thread(lambda db: db.execute(SQL.PRUNE.format("?"), (before,)).rowcount)

    async def report(self, by: tuple[str, ...], since_day: str) -> list[dict[str, Any]]:
        return await self._rows(SQL.report(by, lambda _: "?"), (since_day,))

    async def latest(self, limit: int) -> list[dict[str, Any]]:
        """The newest events, newest first."""
        rows = await self._rows(SQL.LATEST.format("?"), (limit,))
        return [{**r, "stream": bool(r["stream"]), "client_gone": bool(r["client_gone"]),
                 "usage_estimated": bool(r["usage_estimated"])} for r in rows]  # fmt: skip

    async def _rows(self, query: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        def work(db: sqlite3.Connection) -> list[dict[str, Any]]:
            cursor = db.execute(query, args)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

        return await self._on_thread(work)

    async def close(self) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._on_thread(work)
        self._thread.shutdown(wait=False)
