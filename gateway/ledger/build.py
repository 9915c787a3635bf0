"""The usage ledger a config asks for (`ledger: {backend: sqlite | postgres | off}`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import LedgerOptions
from gateway.ledger import Ledger, LedgerStore
from gateway.ledger.journal import Journal

DAY_S = 86_400.0


def build_store(options: LedgerOptions) -> LedgerStore:
    if options.backend == "postgres":
        from gateway.ledger.postgres import PostgresLedger  # asyncpg only when asked for

        assert options.dsn is not None
        return PostgresLedger(options.dsn, options.pool_size)
    from gateway.ledger.sqlite import SqliteLedger

    assert options.path is not None
    return SqliteLedger(Path(options.path))


def build_ledger(options: LedgerOptions, metrics: Any = None) -> Ledger | None:
    if not options.enabled:
        return None
    assert options.journal is not None
    retention = options.retention_days * DAY_S if options.retention_days is not None else None
    return Ledger(build_store(options), Journal(Path(options.journal)), options.flush_interval_s, options.max_batch,
                  options.buffer, retention, metrics)  # fmt: skip
