"""The usage ledger under a scale-out deployment: two replicas of two workers each (`--workers 2`,
limits in a real Redis), routing on, writing one ledger (a SQLite file on this host, or a real
PostgreSQL); 2,000 mixed requests (both protocols, streams, aborted streams, failovers, refused
bodies) from concurrent clients; then the ledger must agree with what every client was told. And a
PostgreSQL stopped for 30 s under load: requests keep succeeding and no row is lost."""

from __future__ import annotations

import concurrent.futures
import itertools
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.procs import serve_workers, start_gateway, write_config
from tests.usage_traffic import KINDS, TOKENS, Seen, requests_by_combination, send

KEYS = {f"team{i}": f"gw-scale-team{i}-0123456789" for i in range(3)}
PRICES = {"mock/coder": (0.27, 1.10), "mock/writer": (2.5, 10.0), "mock/thinker": (0.6, 2.4), "mock/plain": (0.1, 0.4)}
PLAIN = """
version: v0.4.0
llm_providers:
  - model: mock/plain
    base_url: {mock}/v1
    default: true
    pricing: {{input: 0.1, output: 0.4}}
"""
CONFIG = PLAIN + """  - model: mock/coder
    base_url: {mock}/v1
    pricing: {{input: 0.27, output: 1.10}}
    headers: {{x-mock-cached: "4"}}
  - model: mock/writer
    base_url: {mock}/v1
    pricing: {{input: 2.5, output: 10.0}}
  - model: mock/thinker
    base_url: {mock}/v1
    pricing: {{input: 0.6, output: 2.4}}
    headers: {{x-mock-status: "503"}}  # always down: every request fails over to coder
    fallbacks: [coder]
routing_preferences:
  - name: code_review
    description: reviewing and analyzing existing code for bugs and improvements
    models: [coder]
  - name: creative_writing
    description: creative content generation, storytelling, and writing assistance
    models: [writer]
  - name: complex_reasoning
    description: deep analysis, mathematical problem solving, and logical reasoning
    models: [thinker]
gateway_keys:
{keys}
state:
  backend: redis
  url: {redis}
  timeout: 250ms
failover:
  cooldown: 1ms  # `thinker` keeps being tried first, so every one of its requests fails over
ledger:
  {ledger}
  flush_interval: 200ms
"""
TEXTS = [
    "Can you review this function and point out bugs?\n\ndef mean(xs):\n    return sum(xs) / len(xs) + 1",
    "Write a short poem about autumn rain falling on a quiet harbour town.",
    "Prove that the square root of 2 is irrational, step by step.",
    "What's the capital of Portugal?",
]


def config_for(tmp_path: Path, mock: str, redis: str, ledger: str) -> Path:
    keys = "\n".join(f"  - {{name: {name}, key: {key}}}" for name, key in KEYS.items())
    return write_config(tmp_path, CONFIG.format(mock=mock, redis=redis, keys=keys, ledger=ledger))


def drive(bases: list[str], total: int) -> list[Seen]:
    plan = list(itertools.islice(itertools.cycle(itertools.product(KINDS, KEYS, TEXTS)), total))
    local = threading.local()

    def one(i: int) -> Seen:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        kind, name, text = plan[i]
        return send(local.client, bases[i % len(bases)], kind, name, KEYS[name], f"{text} ({i})")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(total)))


def check(seen: list[Seen], events: list[dict[str, Any]], daily: list[dict[str, Any]]) -> None:
    by_id = {e["request_id"]: e for e in events}
    assert len(events) == len(by_id) == len(seen), "one row per request, none twice"
    assert set(by_id) == {s.request_id for s in seen}
    for s in seen:
        e = by_id[s.request_id]
        assert (e["key_name"], e["model"], e["route"], e["status"]) == (s.key, s.model, s.route, s.status)
        price_in, price_out = PRICES.get(e["model"], (0, 0))
        assert e["cost_nano"] == round(e["input_tokens"] * price_in * 1000 + e["output_tokens"] * price_out * 1000)
        if s.completed:
            assert tuple(e[t] for t in TOKENS) == tuple(getattr(s, t) for t in TOKENS)
    combos = {(r["key_name"], r["model"], r["route"]): (r["requests"], r["errors"]) for r in daily}
    assert combos == requests_by_combination(seen)
    sums: dict[tuple[str, str, str], Counter[str]] = {}
    for e in events:
        sums.setdefault((e["key_name"], e["model"], e["route"]), Counter()).update(
            {c: e[c] for c in ("input_tokens", "output_tokens", "cache_read_tokens", "cost_nano")})
    assert {k: dict(v) for k, v in sums.items()} == \
        {(r["key_name"], r["model"], r["route"]): {c: r[c] for c in ("input_tokens", "output_tokens",
                                                                     "cache_read_tokens", "cost_nano")}
         for r in daily}  # fmt: skip
    # the mix really is mixed
    assert Counter(s.route for s in seen).keys() >= {"code_review", "creative_writing", "complex_reasoning"}
    assert sum(e["fallback_from"] == "mock/thinker" for e in events) > 100
    assert sum(s.status == 400 for s in seen) > 100 and sum(e["cache_read_tokens"] > 0 for e in events) > 100


def sqlite_rows(path: Path, table: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute(f"SELECT * FROM {table}")]


def daily_by_combination(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """usage_daily summed over day and provider (a run may cross midnight)."""
    out: dict[tuple[str, str, str], Counter[str]] = {}
    for r in rows:
        out.setdefault((r["key_name"], r["model"], r["route"]), Counter()).update(
            {c: int(r[c]) for c in ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cost_nano")})
    return [{"key_name": k, "model": m, "route": rt, **v} for (k, m, rt), v in out.items()]


@pytest.fixture()
def replicas_of(mock: str, redis_service: Any, tmp_path: Path) -> Iterator[Any]:
    started: list[Any] = []

    def start(ledger: str) -> list[str]:
        redis_service.flush()
        config = config_for(tmp_path, mock, redis_service.url, ledger)
        bases = []
        for _ in range(2):
            proc, base = serve_workers(config, 2)
            started.append(proc)
            bases.append(base)
        return bases

    yield start, started
    for proc in started:
        proc.stop(grace=30)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_2000_mixed_requests_over_two_replicas_of_two_workers_add_up_exactly(
        backend: str, replicas_of: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:  # fmt: skip
    start, started = replicas_of
    if backend == "postgres":
        server = request.getfixturevalue("postgres_service")
        server.reset()
        bases = start(f"backend: postgres\n  dsn: {server.dsn}")
    else:
        bases = start("backend: sqlite")
    seen = drive(bases, 2000)
    for proc in started:  # SIGTERM: every worker drains and writes what it buffered
        proc.stop(grace=30)
        assert proc.returncode == 0 and "ledger: cannot write" not in proc.output(), proc.output()[-3000:]
    if backend == "postgres":
        events = [dict(r) for r in server.query("SELECT * FROM usage_event")]
        daily = [dict(r) for r in server.query("SELECT * FROM usage_daily")]
    else:
        database = tmp_path / "config.usage.db"
        events, daily = sqlite_rows(database, "usage_event"), sqlite_rows(database, "usage_daily")
    check(seen, events, daily_by_combination(daily))


def test_postgres_stopped_for_30_seconds_under_load_loses_no_row(mock: str, postgres_service: Any,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    postgres_service.reset()
    config = write_config(tmp_path, PLAIN.format(mock=mock) + f"""
ledger:
  backend: postgres
  dsn: {postgres_service.dsn}
  flush_interval: 200ms
  buffer: 100  # past it, the outage's rows go to the journal on disk
""")
    gateway, base = start_gateway(config, None, "--log-level", "warning")
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        body = {"model": "plain", "max_tokens": 8, "messages": [{"role": "user", "content": "count me"}]}
        with httpx.Client(timeout=30) as client:
            for _ in range(2000):  # bounded: about 45 s at this pace
                if stop.is_set():
                    return
                statuses[client.post(f"{base}/v1/chat/completions", json=body).status_code] += 1
                time.sleep(0.02)

    with gateway:
        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(3)
            postgres_service.stop()
            time.sleep(30)
            during = sum(statuses.values())
            postgres_service.start()
            time.sleep(5)
        finally:
            stop.set()
            worker.join(60)
        gateway.stop(grace=30)
        assert gateway.returncode == 0
        output = gateway.output()
    assert set(statuses) == {200} and during > 300  # every request kept succeeding while the database was down
    assert "ledger: cannot write usage" in output and "reachable again" in output
    assert "journaled events written" in output  # the outage went past the buffer, onto disk, and back
    count, distinct = postgres_service.query("SELECT count(*), count(DISTINCT request_id) FROM usage_event")[0]
    assert count == distinct == sum(statuses.values())
    assert postgres_service.query("SELECT sum(requests) FROM usage_daily")[0][0] == count
    assert not list((tmp_path / "config.usage-journal").glob("*"))
