"""The ledger in PostgreSQL (asyncpg), for replicas on several hosts.

A batch is one statement: the events go in as one array per column, the ones not stored yet are
inserted, and exactly those are added to the daily rollup (in conflict-key order, so flushes of many
replicas lock rows in the same order and cannot deadlock)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, Sequence

import asyncpg

from gateway.ledger import DAILY_KEY, EVENT_COLUMNS, UsageEvent
from gateway.ledger import sql as SQL

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
_ARRAY_TYPES = {"TEXT": "text", "DOUBLE": "float8", "INTEGER": "int4", "BIGINT": "int8", "BOOLEAN": "bool"}


def _array_type(column: str) -> str:
    return _ARRAY_TYPES[SQL.EVENT_TYPES[column].split()[0]] + "[]"


_UNNEST = ", ".join(f"${i}::{_array_type(c)}" for i, c in enumerate(EVENT_COLUMNS, 1))
WRITE = (
    f"WITH batch AS (SELECT * FROM unnest({_UNNEST}) AS b({', '.join(EVENT_COLUMNS)})), "
    f"ins AS (INSERT INTO usage_event SELECT * FROM batch ON CONFLICT (id) DO NOTHING RETURNING *), "
    f"daily AS ({SQL.rollup('ins')} RETURNING {DAILY_KEY[0]}) "
    "SELECT count(*) FROM ins"
)


class PostgresLedger:
    def __init__(self, dsn: str, pool_size: int = 2) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _connected(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                # statement_cache_size=0: safe behind PgBouncer in transaction mode.
                pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size, timeout=CONNECT_TIMEOUT_S,
                                                 command_timeout=COMMAND_TIMEOUT_S, statement_cache_size=0)  # fmt: skip
                try:
                    async with pool.acquire() as connection, connection.transaction():
                        # One creator at a time: replicas starting together race on CREATE ... IF NOT EXISTS.
                        await connection.execute("SELECT pg_advisory_xact_lock(7243190)")
                        for statement in SQL.SCHEMA:
                            await connection.execute(statement)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    async def open(self) -> None:
        await self._connected()

    async def write(self, events: Sequence[UsageEvent]) -> int:
        columns = list(zip(*(event.row() for event in events))) if events else [[] for _ in EVENT_COLUMNS]
        pool = await self._connected()
        return int(await pool.fetchval(WRITE, *[list(c) for c in columns]))

    async def spent_nano(self, key_name: str, since: float) -> int:
        pool = await self._connected()
        return int(await pool.fetchval(SQL.spent(since).format("$1", "$2"), key_name, since))

    async def prune(self, before: float) -> int:
        pool = await self._connected()
        status = await pool.execute(SQL.PRUNE.format("$1"), before)
        return int(status.split()[-1])

    async def report(self, by: tuple[str, ...], since_day: str) -> list[dict[str, Any]]:
        pool = await self._connected()
        rows = await pool.fetch(SQL.report(by, lambda i: f"${i}"), since_day)
        # SUM of a BIGINT is a NUMERIC (a Decimal here): whole numbers, as SQLite gives them.
        return [{k: int(v) if isinstance(v, Decimal) else v for k, v in row.items()} for row in rows]

    async def latest(self, limit: int) -> list[dict[str, Any]]:
        """The newest events, newest first."""
        pool = await self._connected()
        return [dict(row) for row in await pool.fetch(SQL.LATEST.format("$1"), limit)]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
