"""The usage ledger's stores, one suite for both: SQLite in a temporary file and a real PostgreSQL
server; then the write path (`Ledger`) through a real database outage, with the journal."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from gateway.ledger import DAILY_SUMS, Ledger, LedgerStore, UsageEvent
from gateway.ledger.journal import Journal
from gateway.ledger.sqlite import SqliteLedger


def event(i: int, key: str = "team", model: str = "mock/a", route: str = "", day: str = "2026-12-05",
          status: int = 200, tokens: tuple[int, int, int, int] = (100, 20, 30, 5), cost: int = 77,
          ts: float | None = None) -> UsageEvent:  # fmt: skip
    return UsageEvent(f"ev-{i}", f"req-{i}", time.time() if ts is None else ts, day, key, route, "any", model,
                      model.split("/")[0], "openai", status, 1, "", True, False, *tokens, cost, 12.5, 3.0, False)  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LedgerStore]:
    if request.param == "sqlite":
        return lambda: SqliteLedger(tmp_path / "usage.db")
    server = request.getfixturevalue("postgres_service")
    server.reset()
    from gateway.ledger.postgres import PostgresLedger

    return lambda: PostgresLedger(server.dsn)


def run(body: Callable[[LedgerStore], Awaitable[None]], store: LedgerStore) -> None:
    async def main() -> None:
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {s: sum(int(r[s]) for r in rows) for s in DAILY_SUMS}


def test_a_batch_written_again_counts_once(make_store: Callable[[], LedgerStore]) -> None:
    async def body(store: LedgerStore) -> None:
        assert await store.write([event(i) for i in range(5)]) == 5
        # a retry after a lost acknowledgement, with two new events in it
        assert await store.write([event(i) for i in range(3, 7)]) == 2
        assert await store.write([]) == 0
        rows = await store.report(("key", "model"), "2026-01-01")  # type: ignore[attr-defined]
        assert rows == [{"key": "team", "model": "mock/a", "requests": 7, "errors": 0, "input_tokens": 700,
                         "output_tokens": 140, "cache_read_tokens": 210, "cache_write_tokens": 35, "cost_nano": 539}]  # fmt: skip

    run(body, make_store())


def test_the_daily_rollup_is_the_sum_of_the_events_in_every_combination(make_store: Callable[[], LedgerStore]) -> None:
    rng = random.Random(7)
    events = [event(i, key=rng.choice(["a", "b", "c"]), model=rng.choice(["x/1", "x/2", "y/1"]),
                    route=rng.choice(["", "code", "prose"]), day=rng.choice(["2026-12-04", "2026-12-05"]),
                    status=rng.choice([200, 200, 200, 429, 502, 0]),
                    tokens=(rng.randrange(1000), rng.randrange(500), rng.randrange(50), rng.randrange(9)),
                    cost=rng.randrange(10**9)) for i in range(1200)]  # fmt: skip

    async def body(store: LedgerStore) -> None:
        for start in range(0, len(events), 500):  # batches as the flusher sends them
            assert await store.write(events[start:start + 500]) == len(events[start:start + 500])
        by = ("key", "model", "route", "day", "provider")
        rows = await store.report(by, "2026-01-01")  # type: ignore[attr-defined]
        expected: dict[tuple[str, ...], Counter[str]] = {}
        for e in events:
            sums = expected.setdefault((e.key_name, e.model, e.route, e.day, e.provider), Counter())
            sums.update({"requests": 1, "errors": int(e.error), "input_tokens": e.input_tokens,
                         "output_tokens": e.output_tokens, "cache_read_tokens": e.cache_read_tokens,
                         "cache_write_tokens": e.cache_write_tokens, "cost_nano": e.cost_nano})  # fmt: skip
        assert {tuple(r[d] for d in by): {s: r[s] for s in DAILY_SUMS} for r in rows} == \
            {k: {s: v[s] for s in DAILY_SUMS} for k, v in expected.items()}  # fmt: skip
        since_fifth = await store.report(("day",), "2026-12-05")  # type: ignore[attr-defined]
        assert [r["day"] for r in since_fifth] == ["2026-12-05"]

    run(body, make_store())


def test_spend_since_a_time_and_retention(make_store: Callable[[], LedgerStore]) -> None:
    now = time.time()

    async def body(store: LedgerStore) -> None:
        await store.write([event(1, ts=now - 7200, cost=1000), event(2, ts=now - 10, cost=250),
                           event(3, key="other", ts=now, cost=5)])  # fmt: skip
        assert await store.spent_nano("team", now - 3600) == 250
        assert await store.spent_nano("team", 0) == 1250
        assert await store.spent_nano("nobody", 0) == 0
        assert await store.prune(now - 3600) == 1  # the old event goes; its day's rollup stays
        assert await store.spent_nano("team", now - 3600) == 250
        assert await store.spent_nano("team", 0) == 1250  # since ever (a budget that never renews): the rollups
        assert totals(await store.report((), "2026-01-01"))["requests"] == 3  # type: ignore[attr-defined]

    run(body, make_store())


def test_concurrent_writers_on_one_database_lose_nothing(make_store: Callable[[], LedgerStore]) -> None:
    """Four processes' flushes at once (four stores, one database): no lock errors, no deadlock, every
    event counted once, even with overlapping (retried) batches."""

    async def main() -> None:
        stores = [make_store() for _ in range(4)]
        for store in stores:
            await store.open()
        try:
            async def writer(n: int, store: LedgerStore) -> None:
                for b in range(10):
                    batch = [event(n * 10_000 + b * 50 + i, key=f"k{i % 7}", model=f"m/{i % 3}") for i in range(50)]
                    await store.write(batch)
                    await store.write(batch[:10])  # the same events again

            await asyncio.gather(*(writer(n, s) for n, s in enumerate(stores)))
            rows = await stores[0].report(("key", "model"), "2026-01-01")  # type: ignore[attr-defined]
            assert len(rows) == 21 and totals(rows)["requests"] == 4 * 10 * 50
            assert totals(rows)["cost_nano"] == 4 * 10 * 50 * 77
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_costs_are_whole_nano_dollars() -> None:
    from gateway.config import Pricing

    assert Pricing(0.27, 1.10).nano(1_000_000, 1_000_000) == 1_370_000_000
    assert Pricing(0.27, 1.10).nano(3, 7) == 8_510  # 810 + 7,700 nano-dollars, exactly


def test_the_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    async def body(store: LedgerStore) -> None:
        await store.write([event(1)])

    run(body, SqliteLedger(tmp_path / "u.db"))
    assert sqlite3.connect(tmp_path / "u.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_outage_buffers_then_journals_and_loses_nothing(postgres_service: Any, tmp_path: Path) -> None:
    """The real server stopped mid-stream: events wait in memory, past `buffer` they go to journal
    files, a stop while it is down journals the rest; the next process writes them all once."""
    from gateway.ledger.postgres import PostgresLedger

    postgres_service.reset()
    journal = Journal(tmp_path / "journal")

    async def first_process() -> None:
        ledger = Ledger(PostgresLedger(postgres_service.dsn), journal, flush_interval_s=0.05, buffer=30)
        await ledger.start()
        for i in range(20):
            ledger.add(event(i))
        await asyncio.sleep(0.3)
        assert ledger.pending == [] and ledger.healthy
        postgres_service.stop()
        try:
            for i in range(20, 120):
                ledger.add(event(i))
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)
            assert not ledger.healthy and journal.pending()  # over the buffer: on disk
            await ledger.close(wait_s=2)  # still down: what is left goes to the journal too
        finally:
            postgres_service.start()

    asyncio.run(first_process())
    assert postgres_service.query("SELECT count(*) FROM usage_event")[0][0] == 20
    assert journal.pending()  # the 100 events of the outage, all on disk

    async def next_process() -> None:
        ledger = Ledger(PostgresLedger(postgres_service.dsn), journal, flush_interval_s=0.05)
        await ledger.start()
        await asyncio.sleep(0.5)
        await ledger.close()

    asyncio.run(next_process())
    assert tuple(postgres_service.query("SELECT count(*), count(DISTINCT request_id) FROM usage_event")[0]) == (120, 120)
    assert postgres_service.query("SELECT sum(requests) FROM usage_daily")[0][0] == 120
    assert journal.pending() == []
