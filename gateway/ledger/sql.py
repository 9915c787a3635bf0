"""The ledger's SQL, one text for SQLite and PostgreSQL where the two dialects agree (pure)."""

from __future__ import annotations

from typing import Callable

from gateway.ledger import DAILY_KEY, DAILY_SUMS, EVENT_COLUMNS

EVENT_TYPES = {
    "id": "TEXT PRIMARY KEY", "request_id": "TEXT NOT NULL", "ts": "DOUBLE PRECISION NOT NULL",
    "day": "TEXT NOT NULL", "key_name": "TEXT NOT NULL", "route": "TEXT NOT NULL", "requested_model": "TEXT NOT NULL",
    "model": "TEXT NOT NULL", "provider": "TEXT NOT NULL", "protocol": "TEXT NOT NULL", "status": "INTEGER NOT NULL",
    "attempts": "INTEGER NOT NULL", "fallback_from": "TEXT NOT NULL", "stream": "BOOLEAN NOT NULL",
    "client_gone": "BOOLEAN NOT NULL", "input_tokens": "BIGINT NOT NULL", "output_tokens": "BIGINT NOT NULL",
    "cache_read_tokens": "BIGINT NOT NULL", "cache_write_tokens": "BIGINT NOT NULL", "cost_nano": "BIGINT NOT NULL",
    "latency_ms": "DOUBLE PRECISION NOT NULL", "ttft_ms": "DOUBLE PRECISION", "usage_estimated": "BOOLEAN NOT NULL",
}  # fmt: skip
assert tuple(EVENT_TYPES) == EVENT_COLUMNS

SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS usage_event ({', '.join(f'{c} {t}' for c, t in EVENT_TYPES.items())})",
    "CREATE INDEX IF NOT EXISTS usage_event_key_ts ON usage_event (key_name, ts)",
    "CREATE INDEX IF NOT EXISTS usage_event_ts ON usage_event (ts)",
    f"CREATE TABLE IF NOT EXISTS usage_daily ({', '.join(f'{c} TEXT NOT NULL' for c in DAILY_KEY)}, "
    f"{', '.join(f'{c} BIGINT NOT NULL' for c in DAILY_SUMS)}, PRIMARY KEY ({', '.join(DAILY_KEY)}))",
)

# The rollup of a set of events (`source`: a table or CTE holding only events new to usage_event), added
# onto usage_daily. Rows go in conflict-key order, so concurrent writers lock them in the same order.
_SUMS = ("count(*)", "sum(CASE WHEN status = 0 OR status >= 400 THEN 1 ELSE 0 END)", "sum(input_tokens)",
         "sum(output_tokens)", "sum(cache_read_tokens)", "sum(cache_write_tokens)", "sum(cost_nano)")  # fmt: skip
_KEY = ", ".join(DAILY_KEY)


def rollup(source: str, where: str = "true") -> str:
    return (f"INSERT INTO usage_daily ({_KEY}, {', '.join(DAILY_SUMS)}) "
            f"SELECT {_KEY}, {', '.join(_SUMS)} FROM {source} WHERE {where} GROUP BY {_KEY} ORDER BY {_KEY} "
            f"ON CONFLICT ({_KEY}) DO UPDATE SET "
            + ", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in DAILY_SUMS))  # fmt: skip


SPENT = "SELECT COALESCE(SUM(cost_nano), 0) FROM usage_event WHERE key_name = {0} AND ts >= {1}"
# Since the beginning (a budget that never renews): from the rollups, which outlive the events' retention.
SPENT_EVER = "SELECT COALESCE(SUM(cost_nano), 0) FROM usage_daily WHERE key_name = {0} AND CAST({1} AS DOUBLE PRECISION) <= 0"


def spent(since: float) -> str:
    return SPENT_EVER if since <= 0 else SPENT
PRUNE = "DELETE FROM usage_event WHERE ts < {0}"
LATEST = "SELECT * FROM usage_event ORDER BY ts DESC LIMIT {0}"

DIMENSIONS = ("key", "model", "route", "day", "provider")
COLUMN = {"key": "key_name", "model": "model", "route": "route", "day": "day", "provider": "provider"}


def report(by: tuple[str, ...], placeholder: Callable[[int], str]) -> str:
    """Sums of usage_daily from a first day on (parameter 1), grouped by `by` (names of DIMENSIONS)."""
    columns = [COLUMN[d] for d in by]
    select = ", ".join([*(f"{c} AS {d}" for c, d in zip(columns, by)), *(f"SUM({s}) AS {s}" for s in DAILY_SUMS)])
    group = f" GROUP BY {', '.join(columns)} ORDER BY {', '.join(columns)}" if columns else ""
    return f"SELECT {select} FROM usage_daily WHERE day >= {placeholder(1)}{group}"
