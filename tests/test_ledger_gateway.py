"""The usage ledger behind a real gateway: `junction serve` with the default SQLite ledger beside its
config, the mock upstream, clients of both protocols; then `junction usage` reads what they did."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import itertools
import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
import httpx
import pytest

from gateway.ledger.report import parse_since, usd
from tests.procs import ROOT, start_gateway, write_config
from tests.usage_traffic import KINDS, Seen, requests_by_combination, send

KEYS = {"alpha": "gw-ledger-alpha-0123456789", "beta": "gw-ledger-beta-0123456789"}
CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/cheap
    base_url: {mock}/v1
    default: true
    pricing: {{input: 0.27, output: 1.10}}
    headers: {{x-mock-cached: "3"}}
  - model: mock/down
    base_url: {mock}/v1
    pricing: {{input: 5, output: 15}}
    headers: {{x-mock-status: "503"}}
    fallbacks: [cheap]
  - model: mock/slow
    base_url: {mock}/v1
    pricing: {{input: 0.27, output: 1.10}}
    headers: {{x-mock-chunks: "40", x-mock-gap_ms: "50"}}
gateway_keys:
  - {{name: alpha, key: {alpha}}}
  - {{name: beta, key: {beta}, models: [cheap, down, slow]}}
ledger:
  flush_interval: 200ms
"""


def usage(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "usage", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip


def test_every_request_is_a_ledger_row_and_the_report_adds_them_up(mock: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG.format(mock=mock, **KEYS))
    assert usage(config).returncode == 1  # nothing recorded yet, said plainly
    seen: list[Seen] = []
    gateway, base = start_gateway(config, None, "--log-level", "warning")
    with gateway, httpx.Client(timeout=30) as client:
        for i, (kind, name) in enumerate(itertools.product(KINDS, KEYS)):
            text = f"request {i}: tell me about ledgers"
            # aborts on a slow stream, so the client really leaves mid-answer
            seen.append(send(client, base, kind, name, KEYS[name], text, "slow" if kind == "abort" else "any"))
        # a failover: `down` answers 503, `cheap` serves
        body = {"model": "down", "max_tokens": 16, "messages": [{"role": "user", "content": "fail over"}]}
        answer = client.post(f"{base}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEYS['beta']}"})
        assert answer.status_code == 200 and answer.headers["x-junction-fallback-from"] == "mock/down"
        u = answer.json()["usage"]
        seen.append(Seen(answer.headers["x-junction-request-id"], "beta", "", "mock/cheap", 200, True,
                         u["prompt_tokens"], u["completion_tokens"], 3))  # fmt: skip
        gateway.stop(grace=20)  # SIGTERM: the drain writes what is buffered
        assert gateway.returncode == 0, gateway.output()

    database = tmp_path / "config.usage.db"  # the default: beside the config
    db = sqlite3.connect(database)
    db.row_factory = sqlite3.Row
    rows = {r["request_id"]: r for r in db.execute("SELECT * FROM usage_event")}
    assert len(rows) == len(seen) == 2 * len(KINDS) + 1 and set(rows) == {s.request_id for s in seen}
    prices = {"mock/cheap": (0.27, 1.10), "mock/slow": (0.27, 1.10), "": (0, 0)}
    for s in seen:
        row = rows[s.request_id]
        assert (row["key_name"], row["model"], row["route"], row["status"]) == (s.key, s.model, s.route, s.status)
        price_in, price_out = prices[row["model"]]
        assert row["cost_nano"] == round(row["input_tokens"] * price_in * 1000 + row["output_tokens"] * price_out * 1000)
        if s.completed:  # exactly what the client was told
            assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == \
                (s.input_tokens, s.output_tokens, s.cache_read_tokens)  # fmt: skip
    failover = [r for r in rows.values() if r["fallback_from"]]
    assert [(r["fallback_from"], r["attempts"]) for r in failover] == [("mock/down", 2)]
    aborted = [r for r in rows.values() if r["client_gone"]]
    assert len(aborted) == 2 and all(r["status"] == 200 and r["model"] == "mock/slow" for r in aborted)
    assert all(r["usage_estimated"] and r["output_tokens"] > 0 for r in aborted)  # what had streamed, estimated
    assert sum(r["status"] == 400 for r in rows.values()) == 2  # invalid bodies refused by the gateway are rows too

    report = usage(config, "--by", "key,model,route", "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    got = {(r["key"], r["model"], r["route"]): (r["requests"], r["errors"]) for r in data["rows"]}
    assert got == requests_by_combination(seen)
    assert data["total"]["requests"] == len(seen)
    assert data["total"]["input_tokens"] == sum(r["input_tokens"] for r in rows.values())
    assert data["total"]["cost_usd"] == usd(sum(r["cost_nano"] for r in rows.values()))

    table = usage(config, "--by", "key")
    assert table.returncode == 0 and "alpha" in table.stdout and "beta" in table.stdout
    assert table.stdout.splitlines()[-1].split()[:2] == ["total", str(len(seen))]
    exported = list(csv.DictReader(io.StringIO(usage(config, "--by", "model,day", "--csv").stdout)))
    assert sum(int(r["requests"]) for r in exported) == len(seen) and {r["model"] for r in exported} == {"", "mock/cheap", "mock/slow"}


def test_usage_arguments_are_checked(tmp_path: Path) -> None:
    import datetime as dt

    config = write_config(tmp_path, "version: v0.4.0\nllm_providers:\n  - model: mock/m\n    base_url: http://127.0.0.1:9/v1\n")
    bad = usage(config, "--by", "colour")
    assert bad.returncode == 2 and "key, model, route, day, provider" in bad.stderr
    assert usage(config, "--since", "last tuesday").returncode == 2
    (tmp_path / "off").mkdir()
    off = write_config(tmp_path / "off", "version: v0.4.0\nllm_providers:\n  - model: mock/m\n    base_url: http://127.0.0.1:9/v1\n"
                       "ledger: {backend: off}\n")  # fmt: skip
    assert usage(off).returncode == 1 and "ledger is off" in usage(off).stderr
    today = dt.date(2026, 12, 5)
    assert (parse_since(None, today), parse_since("7d", today), parse_since("2026-11-02", today)) == \
        ("2026-12-01", "2026-11-29", "2026-11-02")  # fmt: skip


@pytest.mark.parametrize("nano, text", [(0, "0.000000000"), (1_370_000_000, "1.370000000"), (8_510, "0.000008510")])
def test_dollars_are_printed_exactly(nano: int, text: str) -> None:
    assert usd(nano) == text


def test_a_report_while_the_gateway_writes(mock: str, tmp_path: Path) -> None:
    """`junction usage` reads the file while the gateway writes it (WAL: readers never block writers)."""
    config = write_config(tmp_path, CONFIG.format(mock=mock, **KEYS))
    gateway, base = start_gateway(config, None, "--log-level", "warning")
    with gateway, httpx.Client(timeout=30) as client:
        for i in range(30):
            send(client, base, "openai", "alpha", KEYS["alpha"], f"hello {i}")
            if i % 10 == 9:
                report = usage(config, "--by", "key", "--json")
                assert report.returncode == 0, report.stderr
        time.sleep(0.6)  # two flush intervals
        assert json.loads(usage(config, "--json").stdout)["total"]["requests"] == 30


BUDGET_CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/priced
    base_url: {mock}/v1
    default: true
    pricing: {{input: 1.0, output: 1.0}}
gateway_keys:
  - {{name: capped, key: gw-ledger-capped-0123456789, budget_usd: 0.0001}}
ledger:
  flush_interval: 100ms
{state}
"""


def spend_until_refused(base: str) -> int:
    """Requests until the budget refuses one; how many were admitted."""
    body = {"model": "priced", "max_tokens": 8, "messages": [{"role": "user", "content": "spend a little"}]}
    headers = {"authorization": "Bearer gw-ledger-capped-0123456789"}
    for admitted in range(100):
        answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)
        if answer.status_code == 429:
            assert answer.json()["error"]["code"] == "insufficient_quota"
            return admitted
        assert answer.status_code == 200, answer.text
    raise AssertionError("the budget never refused")


def refused(base: str) -> bool:
    body = {"model": "priced", "max_tokens": 8, "messages": [{"role": "user", "content": "one more?"}]}
    answer = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30,
                        headers={"authorization": "Bearer gw-ledger-capped-0123456789"})  # fmt: skip
    return answer.status_code == 429 and answer.json()["error"]["code"] == "insufficient_quota"


def test_a_budget_spent_before_a_restart_stays_spent(mock: str, tmp_path: Path) -> None:
    """Per-key state in memory is gone with the process; the budget's spend comes back from the ledger."""
    config = write_config(tmp_path, BUDGET_CONFIG.format(mock=mock, state=""))
    gateway, base = start_gateway(config, None, "--log-level", "warning")
    with gateway:
        assert spend_until_refused(base) >= 2
        gateway.stop(grace=20)
    gateway, base = start_gateway(config, None, "--log-level", "warning")
    with gateway:
        assert refused(base)


def test_a_budget_survives_redis_losing_its_data(mock: str, tmp_path: Path, redis_service: Any) -> None:
    redis_service.flush()
    state = f"state: {{backend: redis, url: '{redis_service.url}', timeout: 250ms}}"
    config = write_config(tmp_path, BUDGET_CONFIG.format(mock=mock, state=state))
    gateway, base = start_gateway(config, None, "--log-level", "warning")
    with gateway:
        assert spend_until_refused(base) >= 2
        time.sleep(0.3)  # the ledger's flush
        redis_service.flush()  # a restart without persistence: the spend counter is gone
        assert refused(base)  # seeded again from the ledger, not reset to zero
        assert not [k for k in redis_service.keys() if b"holds" in k]  # and the refusal took nothing


SPEND_CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/ok
    base_url: {mock}/v1
    default: true
    pricing: {{input: 0.27, output: 1.10}}
  - model: mock/slow
    base_url: {mock}/v1
    pricing: {{input: 2.5, output: 10.0}}
    headers: {{x-mock-chunks: "30", x-mock-gap_ms: "30"}}
  - model: mock/broken
    base_url: {mock}/v1
    pricing: {{input: 5, output: 15}}
    headers: {{x-mock-status: "500"}}
  - model: mock/stalls
    base_url: {mock}/v1
    pricing: {{input: 1, output: 3}}
    headers: {{x-mock-fault: stall, x-mock-stall_after: "3"}}
  - model: mock/hangs
    base_url: {mock}/v1
    pricing: {{input: 1, output: 3}}
    headers: {{x-mock-fault: hang}}
gateway_keys:
  - {{name: big, key: gw-ledger-big-0123456789, budget_usd: 10, max_parallel: 50}}
state: {{backend: redis, url: '{redis}', timeout: 250ms}}
timeouts: {{first_byte: 1s, idle: 1s}}
failover: {{failures_to_cool: 1000}}
ledger:
  flush_interval: 100ms
"""


def test_committed_spend_equals_the_ledgers_sum_after_mixed_outcomes(mock: str, tmp_path: Path,
                                                                      redis_service: Any) -> None:  # fmt: skip
    """Successes, upstream errors, a stalled stream cut by the idle timeout, a hung upstream, clients that
    leave mid-stream, over two replicas: afterwards the budget's committed spend in Redis is the ledger's
    sum of cost to the nano-dollar, and no hold or slot is left (no phantom spend)."""
    import redis

    redis_service.flush()
    config = write_config(tmp_path, SPEND_CONFIG.format(mock=mock, redis=redis_service.url))
    headers = {"authorization": "Bearer gw-ledger-big-0123456789"}
    first, a = start_gateway(config, None, "--log-level", "warning")
    second, b = start_gateway(config, None, "--log-level", "warning")
    statuses: Counter[int] = Counter()

    def one(i: int) -> None:
        model = ["ok", "slow", "broken", "stalls", "hangs", "slow"][i % 6]
        body = {"model": model, "max_tokens": 64, "stream": i % 2 == 1 or model == "stalls",
                "messages": [{"role": "user", "content": f"spend {i}"}]}  # fmt: skip
        with httpx.Client(timeout=30) as client, \
                client.stream("POST", f"{(a, b)[i % 2]}/v1/chat/completions", json=body, headers=headers) as answer:  # fmt: skip
            statuses[answer.status_code] += 1
            if model == "slow" and i % 12 == 1:
                next(answer.iter_raw())  # the client leaves mid-answer
                return
            answer.read()

    with first, second:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(one, range(60)))
        time.sleep(0.5)  # settlements after the responses; then the drain writes the ledger
        first.stop(grace=20)
        second.stop(grace=20)
    assert statuses[200] >= 30 and statuses[502] + statuses[504] + statuses[500] >= 10
    store = redis.Redis(port=redis_service.port)
    committed = int(store.get("junction:{big}:spent-n:0"))
    db = sqlite3.connect(tmp_path / "config.usage.db")
    ledger, rows, estimated = db.execute(
        "SELECT sum(cost_nano), count(*), sum(usage_estimated) FROM usage_event WHERE key_name = 'big'").fetchone()  # fmt: skip
    assert rows == 60 and estimated >= 1  # a cut stream is billed on an estimate, in both books alike
    assert committed == ledger > 0
    assert store.zcard("junction:{big}:holds-n:0") == 0 and store.hlen("junction:{big}:held-n:0") == 0
    assert store.zcard("junction:{big}:run") == 0  # every slot given back
