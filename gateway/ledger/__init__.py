"""The usage ledger: one row per LLM request and daily rollups, in SQLite (one host) or PostgreSQL.

The request path only appends an event to a buffer (`Ledger.add`, no I/O). A background task writes
the buffer in batches (every `flush_interval`, or sooner once `max_batch` events wait), each batch in
one transaction that inserts the events it has not seen yet (by event id) and adds exactly those to
`usage_daily`; a batch retried after a lost acknowledgement therefore never counts twice. While the
database is down the buffer keeps growing up to `buffer` events, then spills to journal files that
any process replays once the database is back (and at start), so an outage or a restart loses
nothing. Cost is integer nano-dollars, so sums are exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
import itertools
import os
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, Sequence

from gateway.call import Call
from gateway.ledger.journal import Journal

log = logging.getLogger("junction.ledger")

RETRY_MAX_S = 30.0  # the longest wait between attempts while the database is down


def failed(status: int) -> bool:
    """A request that ended in an error (0: it never got an answer)."""
    return status == 0 or status >= 400


class UsageEvent(NamedTuple):
    """One request as the ledger keeps it (column order = `EVENT_COLUMNS`); a tuple, so that making one on
    the request path and binding it to an INSERT cost next to nothing."""

    id: str  # minted here, unique: the idempotency key of a retried batch
    request_id: str  # the client's x-request-id or the gateway's
    ts: float  # epoch seconds at the end of the request
    day: str  # UTC date, YYYY-MM-DD
    key_name: str  # "" without a gateway key
    route: str  # the routing preference that chose the model, "" for none
    requested_model: str
    model: str  # the model that served (after failover), "" when none did
    provider: str
    protocol: str  # anthropic, openai or responses
    status: int
    attempts: int
    fallback_from: str
    stream: bool
    client_gone: bool
    input_tokens: int  # includes the cached part
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_nano: int  # USD x 1e9, from the serving model's pricing (0 when unpriced)
    latency_ms: float
    ttft_ms: float | None
    usage_estimated: bool  # output tokens estimated from a stream cut before its usage report

    @property
    def error(self) -> bool:
        return failed(self.status)

    def row(self) -> tuple[Any, ...]:
        return tuple(self)


EVENT_COLUMNS = UsageEvent._fields
# The rollup's grouping and its sums, in the order of usage_daily's columns.
DAILY_KEY = ("day", "key_name", "model", "route", "provider")
DAILY_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "cost_nano")  # fmt: skip


# Event ids: this process's random prefix and a counter (unique across processes and restarts, and cheaper
# than a uuid4 per request).
_ids = itertools.count()
_PREFIX = os.urandom(6).hex()


def _reseed_ids() -> None:
    global _PREFIX
    _PREFIX = os.urandom(6).hex()  # a forked worker must not repeat its parent's ids


os.register_at_fork(after_in_child=_reseed_ids)


@lru_cache(maxsize=4)
def _utc_day(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86400))


def event_of(call: Call, now: float | None = None) -> UsageEvent:
    """The ledger's row for a finished call."""
    ts = time.time() if now is None else now
    provider = call.provider
    pricing = provider.pricing if provider else None
    # What the key was charged when it has limits (gateway/chain/quota.py), else what the upstream reported.
    input_tokens, output_tokens = call.billed or (call.input_tokens or 0, call.output_tokens or 0)
    return UsageEvent(
        id=f"{_PREFIX}{next(_ids):x}",
        request_id=call.request_id,
        ts=round(ts, 3),
        day=_utc_day(int(ts // 86400)),
        key_name=call.key.name if call.key else "",
        route=call.route or "",
        requested_model=call.requested_model or "",
        model=provider.model if provider else "",
        provider=provider.prefix if provider else "",
        protocol=call.wire,
        status=call.status,
        attempts=call.attempts,
        fallback_from=call.fallback_from or "",
        stream=call.stream,
        client_gone=call.client_gone,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=call.cache_read_tokens or 0,
        cache_write_tokens=call.cache_write_tokens or 0,
        cost_nano=pricing.nano(input_tokens, output_tokens) if pricing is not None else 0,
        latency_ms=round(call.elapsed_ms(), 2),
        ttft_ms=round(call.ttft_ms, 2) if call.ttft_ms is not None else None,
        usage_estimated=call.usage_estimated or (call.billed is not None and call.billed[0] != (call.input_tokens or 0)),
    )


class LedgerStore(Protocol):
    """A database holding `usage_event` and `usage_daily` (gateway/ledger/sqlite.py, postgres.py)."""

    async def open(self) -> None: ...

    async def write(self, events: Sequence[UsageEvent]) -> int:
        """Insert the events not stored yet and add exactly those to the rollup, in one transaction;
        returns how many were new. Raises on any database failure (nothing is then written)."""
        ...

    async def spent_nano(self, key_name: str, since: float) -> int:
        """The key's summed cost of events at or after `since` (epoch seconds)."""
        ...

    async def prune(self, before: float) -> int:
        """Delete events older than `before` (the daily rollups stay); returns how many."""
        ...

    async def report(self, by: tuple[str, ...], since_day: str) -> list[dict[str, Any]]:
        """usage_daily summed by `by` (gateway/ledger/sql.py DIMENSIONS) from `since_day` on."""
        ...

    async def latest(self, limit: int) -> list[dict[str, Any]]:
        """The newest events, newest first."""
        ...

    async def close(self) -> None: ...


class Ledger:
    """The write path: a bounded buffer, a flusher task, retries with backoff, the journal."""

    def __init__(self, store: LedgerStore, journal: Journal, flush_interval_s: float = 1.0, max_batch: int = 500,
                 buffer: int = 100_000, retention_s: float | None = None, metrics: Any = None) -> None:  # fmt: skip
        self.store, self.journal = store, journal
        self.flush_interval_s, self.max_batch, self.buffer_cap = flush_interval_s, max_batch, buffer
        self.retention_s = retention_s
        self.metrics = metrics  # gateway.observe.Metrics: events written, journaled, dropped
        self.pending: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.healthy = True  # the last write succeeded
        self._pruned_at = 0.0

    # -- the request path ------------------------------------------------------------------
    def add(self, event: UsageEvent) -> None:
        """Append; never waits and never raises."""
        self.pending.append(event)
        if len(self.pending) >= self.max_batch:
            self._wake.set()

    def unflushed_nano(self, key_name: str, since: float) -> int:
        """Cost of this process's events not written yet (part of a budget reseed)."""
        return sum(e.cost_nano for e in self.pending if e.key_name == key_name and e.ts >= since)

    async def spent_nano(self, key_name: str, since: float) -> int:
        """What the key spent since `since`: the database's sum plus this process's unwritten events."""
        return await self.store.spent_nano(key_name, since) + self.unflushed_nano(key_name, since)

    # -- the background side ---------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:  # once per process (a config reload starts the new app, not this)
            return
        try:
            await self.store.open()
        except Exception as exc:  # noqa: BLE001 - the database may come later; events wait for it
            self.healthy = False
            log.warning("ledger: database not reachable at start-up (%s); usage is buffered until it is", exc)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        backoff = self.flush_interval_s
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            self._wake.clear()
            ok = await self.flush()
            if self._closed:
                return
            backoff = self.flush_interval_s if ok else min(RETRY_MAX_S, max(backoff, self.flush_interval_s) * 2)
            if ok:
                await self._maintain()

    async def flush(self) -> bool:
        """Write everything pending, batch by batch, then replay the journal; False on a failure (what
        was not written stays pending; beyond `buffer` events it goes to the journal)."""
        while self.pending:
            batch = self.pending[: self.max_batch]
            try:
                new = await self.store.write(batch)
            except Exception as exc:  # noqa: BLE001 - any database or driver failure
                await self._failed(exc)
                return False
            del self.pending[: len(batch)]
            self._written(len(batch), new)
        while (claim := await asyncio.to_thread(self.journal.claim)) is not None:
            claimed, rows = claim
            events = [UsageEvent(*row) for row in rows]
            try:
                for start in range(0, len(events), self.max_batch):
                    self._written(0, await self.store.write(events[start:start + self.max_batch]))
            except Exception as exc:  # noqa: BLE001 - left for the next attempt; replay is idempotent
                await asyncio.to_thread(self.journal.release, claimed)
                await self._failed(exc)
                return False
            await asyncio.to_thread(self.journal.done, claimed)
            log.warning("ledger: %d journaled events written", len(events))
        return True

    def _written(self, batch: int, new: int) -> None:
        if not self.healthy:
            log.warning("ledger: database reachable again; writing the buffered usage")
        self.healthy = True
        if self.metrics is not None:
            self.metrics.ledger_events.labels("written").inc(new)
        if new < batch:
            log.info("ledger: %d of %d events were already stored (a retried batch)", batch - new, batch)

    async def _failed(self, exc: BaseException) -> None:
        if self.healthy:
            log.warning("ledger: cannot write usage (%s: %s); %d events buffered, retrying", type(exc).__name__,
                        exc, len(self.pending))  # fmt: skip
        self.healthy = False
        if len(self.pending) > self.buffer_cap:
            spill, self.pending = self.pending, []
            try:
                await asyncio.to_thread(self.journal.spill, spill)
                if self.metrics is not None:
                    self.metrics.ledger_events.labels("journaled").inc(len(spill))
            except OSError as error:  # the disk too: the one case where usage is lost, and counted
                log.error("ledger: journal not writable (%s); %d events dropped", error, len(spill))
                if self.metrics is not None:
                    self.metrics.ledger_events.labels("dropped").inc(len(spill))

    async def _maintain(self) -> None:
        """Retention: old events are deleted once an hour (the daily rollups stay)."""
        now = time.time()
        if self.retention_s is None or now - self._pruned_at < 3600:
            return
        self._pruned_at = now
        try:
            removed = await self.store.prune(now - self.retention_s)
            if removed:
                log.info("ledger: %d events past the retention removed", removed)
        except Exception as exc:  # noqa: BLE001
            log.warning("ledger: retention pass failed (%s)", exc)

    async def close(self, wait_s: float = 10.0) -> None:
        """Drain: a last flush (at most `wait_s`); what is still unwritten goes to the journal."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=wait_s)
            except (TimeoutError, asyncio.CancelledError):
                pass
        if self.pending:
            self.buffer_cap = 0
            await self._failed(RuntimeError("stopping with the database unreachable"))
        try:
            await self.store.close()
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
