#!/usr/bin/env python3
"""Throughput of `junction serve --workers N` (N = 1, 2, 4) with the key limits shared through Redis.

For each worker count, one gateway (state: {backend: redis}) in front of the mock upstream; a load of
`--concurrency` keep-alive connections sends small non-streaming chat requests for `--seconds`, with a key
whose limits are admitted and settled on every request (high enough never to refuse); requests per second
and latency percentiles are recorded. Then a burst of 200 requests with a 60-requests-per-minute key checks
that the limit is still exact whatever the worker count. The usage ledger is on, as by default (one SQLite
file all workers write; `--ledger off` to leave it out): after each run its rows are counted against the
requests answered. The load client (this process) and the mock share
the machine's cores with the gateway, so this is a relative measure: runs of the three counts alternate in
`--rounds` rounds and the medians are reported.

  .venv/bin/python benchmarks/scale.py            # about 2 minutes
  .venv/bin/python benchmarks/scale.py --quick    # about 40 s
Tables to stdout, JSON to benchmarks/results/scale.json. Needs redis-server (`make servers`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import HOST, connect, free_port, mock_argv  # noqa: E402  (the same lean client)

ROOT = Path(__file__).resolve().parent.parent
KEY, LIMITED = "jk-scale-not-a-secret", "jk-scale-60-not-a-secret"


def config(mock_port: int, redis_port: int, backend: str, ledger: str) -> str:
    state = f'state: {{ backend: redis, url: "redis://{HOST}:{redis_port}/0" }}\n' if backend == "redis" else ""
    return state + f"ledger: {{ backend: {ledger}, flush_interval: 200ms }}\n" + f"""version: v0.4.0
llm_providers:
  - model: mock/scale
    base_url: http://{HOST}:{mock_port}/v1
    default: true
    headers: {{ x-mock-words: "20" }}
gateway_keys:
  - {{ name: load, key: {KEY}, rpm: 1000000000, tpm: 1000000000000, max_parallel: 100000 }}
  - {{ name: sixty, key: {LIMITED}, rpm: 60 }}
"""


def payload(port: int, key: str) -> bytes:
    body = json.dumps({"model": "scale", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = [f"POST /v1/chat/completions HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", f"Authorization: Bearer {key}"]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def wait_http(port: int, timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port}")


async def load(port: int, concurrency: int, seconds: float) -> dict[str, Any]:
    data = payload(port, KEY)
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = await connect(port)
        try:
            while time.monotonic() < stop:
                status, _, total, _, _ = await conn.request(data)
                if status == 200:
                    latencies.append(total)
                else:
                    errors += 1
        finally:
            conn.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": ordered[len(ordered) // 2] if ordered else None,
            "p99_ms": ordered[int(len(ordered) * 0.99)] if ordered else None}  # fmt: skip


def ledger_rows(database: Path) -> int:
    """Rows of the run's ledger, then the file is removed for the next run."""
    import sqlite3

    with sqlite3.connect(database) as db:
        rows = int(db.execute("SELECT count(*) FROM usage_event").fetchone()[0])
    for path in database.parent.glob(database.name + "*"):
        path.unlink()
    return rows


async def burst(port: int) -> int:
    """200 requests of the 60 rpm key over 8 connections: how many were admitted."""
    data = payload(port, LIMITED)
    admitted = 0
    queue = list(range(200))

    async def worker() -> None:
        nonlocal admitted
        conn = await connect(port)
        try:
            while queue:
                queue.pop()
                status, *_ = await conn.request(data)
                admitted += status == 200
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(8)))
    return admitted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, help="per run (quick 3, full 6)")
    ap.add_argument("--rounds", type=int, help="alternating rounds (quick 1, full 3)")
    ap.add_argument("--backend", choices=["redis", "memory"], default="redis",
                    help="memory: each worker keeps its own limits (--allow-local-state), for comparison")  # fmt: skip
    ap.add_argument("--ledger", choices=["sqlite", "off"], default="sqlite",
                    help="the usage ledger: sqlite (the default, one file for every worker) or off")  # fmt: skip
    args = ap.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 6.0)
    rounds = args.rounds or (1 if args.quick else 3)
    counts = [int(n) for n in args.workers.split(",")]
    redis = shutil.which("redis-server") or shutil.which("valkey-server")
    if redis is None:
        print("redis-server is not installed (make servers): nothing measured", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="junction-scale-"))
    mock_port, redis_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    exact: dict[int, list[int]] = {n: [] for n in counts}
    ledger: dict[int, list[tuple[int, int]]] = {n: [] for n in counts}  # (rows written, requests answered)
    try:
        procs.append(subprocess.Popen(mock_argv(mock_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([redis, "--port", str(redis_port), "--bind", HOST, "--save", "", "--appendonly",
                                       "no", "--dir", str(work)], stdout=subprocess.DEVNULL))  # fmt: skip
        (work / "scale.yaml").write_text(config(mock_port, redis_port, args.backend, args.ledger))
        junction = str(Path(sys.executable).with_name("junction"))
        for round_no in range(rounds):
            for n in counts if round_no % 2 == 0 else list(reversed(counts)):
                port = free_port()
                subprocess.run([shutil.which("redis-cli") or "true", "-p", str(redis_port), "flushall"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                gateway = subprocess.Popen([junction, "serve", "--config", str(work / "scale.yaml"), "--host", HOST,
                                            "--port", str(port), "--workers", str(n), "--log-level", "warning",
                                            "--no-access-log", "--allow-local-state"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                try:
                    wait_http(port)
                    warm = asyncio.run(load(port, args.concurrency, 1.5))  # warm-up: every worker loaded and connected
                    results[n].append(asyncio.run(load(port, args.concurrency, seconds)))
                    exact[n].append(asyncio.run(burst(port)))
                finally:
                    gateway.terminate()
                    gateway.wait(30)  # the drain writes every worker's last rows
                if args.ledger == "sqlite":
                    answered = sum(r["requests"] + r["errors"] for r in (warm, results[n][-1])) + 200
                    ledger[n].append((ledger_rows(work / "scale.usage.db"), answered))
                print(f"round {round_no + 1}: {n} workers: {results[n][-1]['rps']:.0f} req/s, "
                      f"60 rpm key admitted {exact[n][-1]} of 200", file=sys.stderr)  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(r["rps"] for r in results[counts[0]])
    rows = []
    for n in counts:
        rps = statistics.median(r["rps"] for r in results[n])
        rows.append({"workers": n, "rps": round(rps, 1), "speedup": round(rps / base, 2),
                     "p50_ms": round(statistics.median(r["p50_ms"] for r in results[n]), 2),
                     "p99_ms": round(statistics.median(r["p99_ms"] for r in results[n]), 2),
                     "errors": sum(r["errors"] for r in results[n]), "admitted_of_200_at_60_rpm": exact[n],
                     "ledger_rows_of_requests": ledger[n]})  # fmt: skip
    print(f"\n### junction serve --workers N, state in {args.backend} ({os.cpu_count()} cores, {args.concurrency} connections, "
          f"{seconds:g} s per run, median of {rounds})\n")  # fmt: skip
    print("| workers | req/s | vs 1 worker | p50 | p99 | errors | 60 rpm key: admitted of 200 | ledger rows of requests |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        rows_of = ", ".join(f"{got:,} of {sent:,}" for got, sent in row["ledger_rows_of_requests"]) or "off"
        print(f"| {row['workers']} | {row['rps']:.0f} | {row['speedup']:.2f}x | {row['p50_ms']:.2f} ms | "
              f"{row['p99_ms']:.2f} ms | {row['errors']} | {', '.join(map(str, row['admitted_of_200_at_60_rpm']))} | "
              f"{rows_of} |")  # fmt: skip
    out = ROOT / "benchmarks" / "results" / f"scale-{args.backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"backend": args.backend, "ledger": args.ledger, "rows": rows, "concurrency": args.concurrency, "seconds": seconds, "rounds": rounds,
                               "loadavg": os.getloadavg()}, indent=2))  # fmt: skip
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
