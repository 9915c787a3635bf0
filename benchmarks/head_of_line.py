#!/usr/bin/env python3
"""Head-of-line benchmark of the Junction gateway: do 100k-token requests slow down the small
streams that share the gateway with them? (scenario R24 of shared/docs/gateway-anchors.md (c))

What runs (each a separate process on 127.0.0.1):
  mock-small  `junction mock-upstream` answering the small streams     (CPU 0, with the client)
  mock-big    `junction mock-upstream` answering the 100k-token requests (CPU 0)
  gateway     `junction serve`, one worker                              (CPU 1)
The two kinds of traffic have their own upstream, as they would have their own provider calls:
what is measured is the gateway, not the mock parsing 400 KB bodies in front of small requests.

Traffic:
  * small streams: `--small-concurrency` (4) closed-loop client loops, Anthropic and OpenAI
    clients, each relayed to a same-protocol mock model (16 chunks, 5 ms apart);
  * background load, switched on and off: `--big-concurrency` (2) closed-loop loops of ~400 KB
    (~100k-token) Claude Code-style Anthropic requests, streaming, alternately relayed to an
    Anthropic-style mock and translated to an OpenAI-style one (which also counts their tokens);
  * a rig control: one loop of small streams straight to mock-small, so what the rig itself adds
    under load (CPU 0 is shared by the client and the mocks) is visible beside the gateway's figure.

Method: windows of `--window-seconds`, baseline (small streams only) and loaded (with the
background load) interleaved, in ABBA order round after round, so machine drift hits both alike;
the first `--settle-seconds` of each window are discarded. TTFT = request written -> first
content event (Anthropic `content_block_delta`, OpenAI a chunk with content) as the client sees
it. The gateway's `junction_event_loop_lag_seconds` gauge (the worst lag of its last 10 s) is read
from /metrics every second; gateway CPU comes from /proc/<pid>/stat around each window.

Targets: small-stream p99 TTFT rises by <= 20 ms under the load; event-loop lag < 50 ms.

Run it with the gateway's venv:
  .venv/bin/python benchmarks/head_of_line.py --quick    # about a minute
  .venv/bin/python benchmarks/head_of_line.py            # about 3 minutes
The Markdown report goes to stdout, progress to stderr, everything to
benchmarks/results/head_of_line.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead as oh  # shared: lean client, server processes, /proc readers, statistics
import soak  # shared: run helpers (stopping servers, event loop, /metrics reads)

from gateway.observe import LAG_INTERVAL, LAG_SAMPLES

HOST = oh.HOST
DEFAULT_OUT = oh.ROOT / "benchmarks" / "results" / "head_of_line.json"
P99_RISE_MAX_MS = 20.0
LAG_MAX_S = 0.050
# The gauge reports the worst lag of its last 10 s: the warm-up lasts at least that long, so what
# start-up did (loading the tokenizer holds the GIL for ~0.14 s once) has left it before reads count.
LAG_WINDOW_S = LAG_INTERVAL * LAG_SAMPLES
PHASES = ("baseline", "loaded")

# First content event of a stream, as bytes on the wire (same-protocol relay passes the mock's bytes).
CONTENT = {"anthropic": re.compile(rb"event: content_block_delta"),
           "openai": re.compile(rb'"delta":\{"content":"[^"]')}  # fmt: skip


def log(message: str) -> None:
    oh.log(message)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    rounds: int  # each round: one baseline and one loaded window
    window_s: float
    settle_s: float  # discarded at the start of each window
    warmup_s: float
    small_concurrency: int
    big_concurrency: int
    big_bytes: int  # target size of each background request body
    big_delay_ms: float  # mock delay before answering a background request (prefill)
    small_words: int
    small_gap_ms: float
    control: bool
    pin: bool

    @property
    def knobs(self) -> dict[str, str]:
        """The small streams' mock knobs: a paced stream, like a model emitting tokens."""
        return oh.stream_knobs(self.small_words, self.small_words, self.small_gap_ms)

    @property
    def big_knobs(self) -> dict[str, str]:
        return {"words": "32", "chunks": "8", "gap_ms": "2", "ttft_ms": "0", "delay_ms": f"{self.big_delay_ms:g}"}


def settings_from(args: argparse.Namespace) -> Settings:
    def pick(given: Any, quick: Any, full: Any) -> Any:
        return given if given is not None else (quick if args.quick else full)

    settings = Settings(
        rounds=pick(args.rounds, 6, 14),
        window_s=pick(args.window_seconds, 3.0, 5.0),
        settle_s=args.settle_seconds,
        warmup_s=args.warmup_seconds if args.warmup_seconds is not None else LAG_WINDOW_S + 2,
        small_concurrency=args.small_concurrency,
        big_concurrency=args.big_concurrency,
        big_bytes=int(args.big_kb * 1000),
        big_delay_ms=args.big_delay_ms,
        small_words=args.small_words,
        small_gap_ms=args.small_gap_ms,
        control=not args.no_control,
        pin=not args.no_pin,
    )
    if settings.settle_s >= settings.window_s / 2:
        raise SystemExit("--settle-seconds must be less than half of --window-seconds")
    if settings.warmup_s < LAG_WINDOW_S:
        log(f"note: a warm-up shorter than the lag gauge's {LAG_WINDOW_S:g} s window lets start-up show in its reads")
    return settings


# --------------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------------


def big_body(model: str, target_bytes: int) -> dict[str, Any]:
    """A Claude Code-style Anthropic request of about `target_bytes` of JSON: a system prompt, tool
    definitions and a long tool loop (tool_use, then a tool_result with a file's text), streaming.
    400 KB of it is about 100k cl100k tokens."""
    tools = [{"name": f"tool_{i}", "description": "Reads, edits or searches files in the workspace. " * 6,
              "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
             for i in range(10)]  # fmt: skip
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Please refactor the project."}]
    size = 2000
    turn = 0
    while size < target_bytes:
        source = "".join(f"def function_{turn * 40 + k}(value):  # one line of a source file read by a tool\n"
                         for k in range(40))  # fmt: skip
        call_id = f"toolu_{turn:05d}"
        pair = [{"role": "assistant", "content": [{"type": "text", "text": "Reading the next file."},
                 {"type": "tool_use", "id": call_id, "name": "tool_1", "input": {"path": f"src/m{turn}.py"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": source}]}]  # fmt: skip
        messages += pair
        size += len(json.dumps(pair))
        turn += 1
    messages.append({"role": "user", "content": [{"type": "text", "text": "Now summarise what changed."}]})
    return {"model": model, "max_tokens": 256, "stream": True, "system": "You are a careful coding agent. " * 40,
            "tools": tools, "messages": messages}  # fmt: skip


def http_request(port: int, path: str, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Kind:
    """One kind of request: who it goes to and the bytes sent."""

    name: str
    protocol: str  # the client's
    port: int
    payload: bytes


def small_kinds(gw_port: int) -> list[Kind]:
    kinds = []
    for protocol, model in (("anthropic", "small-anthropic"), ("openai", "small-openai")):
        arm = oh.Arm(f"small {protocol}", "junction", protocol, model, oh.auth_headers(protocol, "unused"), None,
                     gw_port)  # fmt: skip
        kinds.append(Kind(f"{protocol} -> gateway -> {protocol}-style mock", protocol, gw_port, arm.payload(True)))
    return kinds


def control_kind(settings: Settings, mock_port: int) -> Kind:
    headers = oh.auth_headers("openai", "unused") + oh.knob_headers(settings.knobs)
    arm = oh.Arm("control", "mock", "openai", "small-openai", headers, None, mock_port)
    return Kind("openai -> mock (rig control)", "openai", mock_port, arm.payload(True))


def big_kinds(settings: Settings, gw_port: int) -> list[Kind]:
    kinds = []
    for model, how in (("big-anthropic", "relayed"), ("big-openai", "translated")):
        body = json.dumps(big_body(model, settings.big_bytes), separators=(",", ":")).encode()
        payload = http_request(gw_port, "/v1/messages", body, oh.auth_headers("anthropic", "unused"))
        kinds.append(Kind(f"{len(body) // 1000} KB Anthropic request, {how}", "anthropic", gw_port, payload))
    return kinds


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class TtftConn(oh.Conn):
    """The benchmark's lean keep-alive connection, also noting when the first content event
    arrives (a separator split across reads is handled by keeping a short tail)."""

    def __init__(self, marker: re.Pattern[bytes] | None = None) -> None:
        super().__init__(keep_body=False)
        self.marker = marker
        self.t_content = 0.0
        self._tail = b""

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self.marker is not None and not self.t_content:
            data = self._tail + body
            if self.marker.search(data):
                self.t_content = time.perf_counter()
            self._tail = data[-64:]

    async def send(self, payload: bytes) -> tuple[int, float]:
        """(status, ms to the first content event; nan if none came)."""
        self.t_content, self._tail = 0.0, b""
        started = time.perf_counter()
        status, *_ = await self.request(payload)
        return status, (self.t_content - started) * 1000 if self.t_content else float("nan")


@dataclass
class Window:
    """Which phase the run is in; requests are attributed to the window they started in."""

    index: int = -1
    phase: str = "warmup"
    started: float = 0.0
    settle_s: float = 0.0

    def counts(self, t: float) -> bool:
        return self.index >= 0 and t >= self.started + self.settle_s


@dataclass
class Results:
    ttft: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # arm -> phase -> ms
    rounds: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # arm -> phase -> per-window p50s
    errors: dict[str, int] = field(default_factory=dict)
    big: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PHASES})  # completed, by phase
    big_bytes: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PHASES})
    big_ms: list[float] = field(default_factory=list)
    lag: list[dict[str, Any]] = field(default_factory=list)  # /metrics reads
    cpu: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PHASES})  # gateway CPU seconds
    wall: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PHASES})  # counted seconds

    def add(self, arm: str, phase: str, ms: float) -> None:
        self.ttft.setdefault(arm, {p: [] for p in PHASES})[phase].append(ms)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def open_conn(port: int, marker: re.Pattern[bytes] | None) -> TtftConn:
    _, conn = await asyncio.get_running_loop().create_connection(lambda: TtftConn(marker), HOST, port)
    return conn


async def small_loop(arm: str, kind: Kind, window: Window, stop: asyncio.Event, results: Results) -> None:
    conn: TtftConn | None = None
    try:
        while not stop.is_set():
            if conn is None or conn.closed:
                conn = await open_conn(kind.port, CONTENT[kind.protocol])
            window_index, phase = window.index, window.phase
            t0 = time.perf_counter()
            try:
                status, ms = await conn.send(kind.payload)
            except (ConnectionError, TimeoutError) as exc:
                results.error(f"{arm}: {type(exc).__name__}")
                conn.close()
                continue
            if status != 200 or math.isnan(ms):  # nan: no content event
                results.error(f"{arm}: status {status}" if status != 200 else f"{arm}: no content event")
            elif window.index == window_index and window.counts(t0):
                results.add(arm, phase, ms)
    finally:
        if conn is not None:
            conn.close()


async def big_loop(i: int, kinds: list[Kind], window: Window, load_on: asyncio.Event, stop: asyncio.Event,
                   results: Results) -> None:  # fmt: skip
    conn: TtftConn | None = None
    n = i
    try:
        while not stop.is_set():
            await load_on.wait()
            if stop.is_set():
                return
            if conn is None or conn.closed:
                conn = await open_conn(kinds[0].port, None)
            kind = kinds[n % len(kinds)]
            n += 1
            phase, t0 = window.phase, time.perf_counter()
            try:
                status, _ = await conn.send(kind.payload)
            except (ConnectionError, TimeoutError) as exc:
                results.error(f"background: {type(exc).__name__}")
                conn.close()
                continue
            if status != 200:
                results.error(f"background: status {status}")
            elif phase in PHASES:
                results.big[phase] += 1
                results.big_bytes[phase] += len(kind.payload)
                results.big_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        if conn is not None:
            conn.close()


async def poll(gw_port: int, big_mock_port: int, window: Window, stop: asyncio.Event, results: Results,
               t_start: float) -> None:  # fmt: skip
    """Every second: the lag gauge; every few seconds the big mock's request log is cleared (it
    keeps the last 1000 parsed bodies, a gigabyte of 400 KB requests)."""
    ticks = 0
    while not stop.is_set():
        lag = await read_lag(gw_port)
        results.lag.append({"t": round(time.perf_counter() - t_start, 2), "phase": window.phase, "lag_s": lag})
        ticks += 1
        if ticks % 3 == 0:
            with contextlib.suppress(OSError, ConnectionError, TimeoutError):
                conn = await oh.connect(big_mock_port)
                try:
                    await conn.request(f"DELETE /_mock/requests HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                finally:
                    conn.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def read_lag(port: int) -> float | None:
    with contextlib.suppress(OSError, ConnectionError, TimeoutError, ValueError):
        status, body = await soak.http_get(port, "/metrics")
        if status == 200:
            for line in body.decode(errors="replace").splitlines():
                if line.startswith("junction_event_loop_lag_seconds "):
                    return float(line.split()[1])
    return None


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


async def probe(kind: Kind, expect_text: bool = True) -> str | None:
    """One untimed request: None when it answers a well-formed stream of its protocol."""
    try:
        conn = await oh.connect(kind.port, keep_body=True)
    except OSError as exc:
        return f"cannot connect: {exc}"
    try:
        status, *_ = await conn.request(kind.payload)
    except (ConnectionError, TimeoutError) as exc:
        return f"request failed: {exc}"
    finally:
        conn.close()
    body = bytes(conn.body)
    if status != 200:
        return f"HTTP {status}: {oh.short(body)}"
    try:
        text = oh.reply_text(kind.protocol, True, body)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"unexpected stream: {exc}"
    return None if text or not expect_text else "empty reply"


async def run(settings: Settings, servers: dict[str, oh.Server], ports: dict[str, int],
              report: dict[str, Any]) -> Results:  # fmt: skip
    _, rig_cpus, _ = oh.pinning(settings)  # type: ignore[arg-type]
    if rig_cpus:
        os.sched_setaffinity(0, {int(rig_cpus)})  # the client shares CPU 0 with the mocks
    smalls = small_kinds(ports["gateway"])
    bigs = big_kinds(settings, ports["gateway"])
    control = control_kind(settings, ports["mock-small"]) if settings.control else None
    probes = {}
    for kind in [*smalls, *bigs, *([control] if control else [])]:
        probes[kind.name] = await probe(kind) or "ok"
        log(f"probe {kind.name}: {probes[kind.name]}")
    report["probes"] = probes
    if any(v != "ok" for v in probes.values()):
        raise SystemExit("a probe failed; nothing to measure")

    results = Results()
    window = Window(settle_s=settings.settle_s)
    stop, load_on = asyncio.Event(), asyncio.Event()
    t_start = time.perf_counter()
    arms: list[tuple[str, Kind]] = [("gateway", smalls[i % len(smalls)]) for i in range(settings.small_concurrency)]
    if control is not None:
        arms.append(("control", control))
    tasks = [asyncio.create_task(small_loop(arm, kind, window, stop, results)) for arm, kind in arms]
    tasks += [asyncio.create_task(big_loop(i, bigs, window, load_on, stop, results))
              for i in range(settings.big_concurrency)]  # fmt: skip
    tasks.append(asyncio.create_task(poll(ports["gateway"], ports["mock-big"], window, stop, results, t_start)))
    gateway = servers["gateway"]
    try:
        log(f"warm-up {settings.warmup_s:g} s with the background load on...")
        load_on.set()
        await asyncio.sleep(settings.warmup_s)
        for r in range(settings.rounds):
            order = PHASES if r % 2 == 0 else PHASES[::-1]  # ABBA: drift hits both phases alike
            for phase in order:
                if phase == "loaded":
                    load_on.set()
                else:
                    load_on.clear()  # requests in flight finish within the settle time
                before = {arm: len(results.ttft.get(arm, {}).get(phase, [])) for arm in ("gateway", "control")}
                window.index, window.phase, window.started = window.index + 1, phase, time.perf_counter()
                await asyncio.sleep(settings.settle_s)
                cpu0, t0 = gateway.cpu(), time.perf_counter()
                await asyncio.sleep(settings.window_s - settings.settle_s)
                results.cpu[phase] += gateway.cpu() - cpu0
                results.wall[phase] += time.perf_counter() - t0
                for arm, n in before.items():
                    new = results.ttft.get(arm, {}).get(phase, [])[n:]
                    if new:
                        results.rounds.setdefault(arm, {p: [] for p in PHASES})[phase].append(oh.describe(new)["p50"])
            gw = results.ttft.get("gateway", {})
            log(f"  round {r + 1}/{settings.rounds}: small streams baseline {len(gw.get('baseline', []))}, "
                f"loaded {len(gw.get('loaded', []))}; background requests {results.big['loaded']}")  # fmt: skip
    finally:
        stop.set()
        load_on.set()  # wakes the background loops so they see `stop`
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def summarize(results: Results, settings: Settings, bigs: dict[str, Any]) -> dict[str, Any]:
    arms: dict[str, Any] = {}
    for arm, phases in results.ttft.items():
        arms[arm] = {phase: oh.describe(values) for phase, values in phases.items()}
        paired = [b - a for a, b in zip(results.rounds.get(arm, {}).get("baseline", []),
                                        results.rounds.get(arm, {}).get("loaded", []))]  # fmt: skip
        base, loaded = arms[arm]["baseline"], arms[arm]["loaded"]
        arms[arm]["rise"] = {
            "p50_ms": round(loaded["p50"] - base["p50"], 3) if base.get("n") and loaded.get("n") else None,
            "p99_ms": round(loaded["p99"] - base["p99"], 3) if base.get("n") and loaded.get("n") else None,
            "p50_paired_median_ms": round(oh.percentile(sorted(paired), 50), 3) if paired else None,
        }
    lags = [row["lag_s"] for row in results.lag if row["lag_s"] is not None and row["phase"] in PHASES]
    loaded_s = results.wall["loaded"]
    return {
        "arms": arms,
        "gateway_cpu_pct": {p: round(100 * results.cpu[p] / results.wall[p], 1) if results.wall[p] else None
                            for p in PHASES},  # fmt: skip
        "background": {
            "requests": results.big["loaded"],
            "per_s": round(results.big["loaded"] / loaded_s, 2) if loaded_s else None,
            "mb_per_s": round(results.big_bytes["loaded"] / loaded_s / 1e6, 2) if loaded_s else None,
            "latency_ms": oh.describe(results.big_ms),
            "bodies": bigs,
        },
        "lag_s": {"max": max(lags) if lags else None, "p50_of_reads": oh.percentile(sorted(lags), 50) if lags else None,
                  "reads": len(lags)},  # fmt: skip
        "errors": results.errors,
    }


def checks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    rise = summary["arms"].get("gateway", {}).get("rise", {}).get("p99_ms")
    out.append({"check": "small-stream p99 TTFT rise under the 100k-token load",
                "value": f"{rise:+.2f} ms" if rise is not None else "n/a", "target": f"<= {P99_RISE_MAX_MS:g} ms",
                "result": "PASS" if rise is not None and rise <= P99_RISE_MAX_MS else "FAIL"})  # fmt: skip
    lag = summary["lag_s"]["max"]
    out.append({"check": "event-loop lag, max of junction_event_loop_lag_seconds",
                "value": f"{lag * 1000:.1f} ms" if lag is not None else "n/a", "target": f"< {LAG_MAX_S * 1000:g} ms",
                "result": "PASS" if lag is not None and lag < LAG_MAX_S else "FAIL"})  # fmt: skip
    errors = sum(summary["errors"].values())
    out.append({"check": "failed requests", "value": str(errors) + (f" ({summary['errors']})" if errors else ""),
                "target": "0", "result": "PASS" if errors == 0 else "FAIL"})  # fmt: skip
    return out


def render(report: dict[str, Any], settings: Settings) -> str:
    env, s = report["environment"], report["summary"]
    machine = (f"{env['when']} · {env['cpu_model']} · {env['nproc']} CPUs · pinning: {env['pinning']} · "
               f"junction {env['versions'].get('junction-gateway')} ({env.get('commit')}"
               f"{' + uncommitted changes' if env.get('uncommitted') else ''})")  # fmt: skip
    bodies = s["background"]["bodies"]
    shape = (f"small streams: c={settings.small_concurrency}, {settings.small_words} chunks {settings.small_gap_ms:g} ms "
             f"apart; background: c={settings.big_concurrency} streaming Anthropic requests of "
             f"{bodies['bytes'] / 1000:.0f} KB (~{bodies['tokens'] / 1000:.0f}k tokens), half relayed, half translated, "
             f"mock delay {settings.big_delay_ms:g} ms; {settings.rounds} rounds of baseline + loaded windows of "
             f"{settings.window_s:g} s (first {settings.settle_s:g} s of each discarded)")  # fmt: skip
    lines = ["## Junction head-of-line benchmark (R24)", "", machine, shape, "",
             "| small-stream TTFT | streams | p50 | p90 | p99 | max | gateway CPU | background requests |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    names = {"gateway": "through the gateway", "control": "rig control (client -> mock)"}
    for arm in ("gateway", "control"):
        if arm not in s["arms"]:
            continue
        for phase in PHASES:
            d = s["arms"][arm][phase]
            if not d.get("n"):
                continue
            cpu = f"{s['gateway_cpu_pct'][phase]:.0f}%" if arm == "gateway" and s["gateway_cpu_pct"][phase] else ""
            big = ""
            if arm == "gateway":
                bg = s["background"]
                big = f"{bg['per_s']}/s ({bg['mb_per_s']} MB/s)" if phase == "loaded" else "none"
            lines.append(f"| {names[arm]}, {phase} | {d['n']} | {d['p50']:.2f} ms | {d['p90']:.2f} ms | "
                         f"{d['p99']:.2f} ms | {d['max']:.1f} ms | {cpu} | {big} |")  # fmt: skip
    lines += ["", "| check | measured | target | result |", "|---|---|---|---|"]
    for c in report["checks"]:
        lines.append(f"| {c['check']} | {c['value']} | {c['target']} | **{c['result']}** |")
    gw = s["arms"].get("gateway", {}).get("rise", {})
    if gw.get("p50_ms") is not None:
        lines.append("")
        lines.append(f"- p50 rise {gw['p50_ms']:+.2f} ms (median of per-round differences "
                     f"{gw['p50_paired_median_ms']:+.2f} ms)")  # fmt: skip
    control = s["arms"].get("control", {}).get("rise", {})
    if control.get("p99_ms") is not None:
        lines.append(f"- rig control (no gateway): p50 {control['p50_ms']:+.2f} ms, p99 {control['p99_ms']:+.2f} ms "
                     "under the same load: what the shared client/mock core adds by itself")  # fmt: skip
    bg = s["background"]
    if bg["latency_ms"].get("n"):
        lines.append(f"- background requests: {bg['requests']} in the loaded windows, each p50 "
                     f"{bg['latency_ms']['p50']:.1f} ms end to end")  # fmt: skip
    lag = s["lag_s"]
    if lag["max"] is not None:
        lines.append(f"- lag gauge: {lag['reads']} reads, median {lag['p50_of_reads'] * 1000:.1f} ms, "
                     f"max {lag['max'] * 1000:.1f} ms")  # fmt: skip
    noise = report.get("noise")
    if noise:
        lines.append("- noise: " + oh.noise_summary(noise, "latencies not comparable"))
    verdict = "PASS" if all(c["result"] == "PASS" for c in report["checks"]) else "FAIL"
    lines += ["", f"**Overall: {verdict}**"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def gateway_config(ports: dict[str, int], settings: Settings) -> str:
    def provider(model: str, mock: str, api: str, knobs: dict[str, str], extra: str = "") -> str:
        base = f"http://{HOST}:{ports[mock]}" + ("" if api == "anthropic" else "/v1")
        interface = "\n    provider_interface: anthropic" if api == "anthropic" else ""
        return (f"  - model: mock/{model}\n    base_url: {base}{interface}\n    access_key: not-a-real-key\n"
                f"    headers:{oh.yaml_knob_headers(knobs)}\n{extra}")  # fmt: skip

    providers = (provider("small-openai", "mock-small", "openai", settings.knobs, "    default: true\n")
                 + provider("small-anthropic", "mock-small", "anthropic", settings.knobs)
                 + provider("big-anthropic", "mock-big", "anthropic", settings.big_knobs)
                 + provider("big-openai", "mock-big", "openai", settings.big_knobs))  # fmt: skip
    return f"""version: v0.4.0
llm_providers:
{providers}listeners:
  - {{ type: model, name: hol, address: {HOST}, port: {ports['gateway']} }}
"""


def start(settings: Settings, workdir: Path, servers: dict[str, oh.Server], report: dict[str, Any]) -> dict[str, int]:
    """Start both mocks and the gateway; fills `servers` as it goes, so the caller can stop
    whatever started even if this fails."""
    proxy_cpus, rig_cpus, _ = oh.pinning(settings)  # type: ignore[arg-type]
    ports = {name: oh.free_port() for name in ("mock-small", "mock-big", "gateway")}
    config = workdir / "junction.yaml"
    config.write_text(gateway_config(ports, settings))
    report["config"] = config.read_text()
    for name in ("mock-small", "mock-big"):
        servers[name] = oh.Server(name, oh.mock_argv(ports[name]), ports[name], "/_mock/health", workdir / f"{name}.log")
        servers[name].start(dict(os.environ), rig_cpus)
    junction = Path(sys.executable).with_name("junction")
    # INFO: the access log is on, as in a deployment.
    argv = [str(junction), "serve", "--config", str(config), "--host", HOST, "--port", str(ports["gateway"]),
            "--log-level", "info"]  # fmt: skip
    servers["gateway"] = oh.Server("gateway", argv, ports["gateway"], "/healthz", workdir / "gateway.log")
    servers["gateway"].start(dict(os.environ), proxy_cpus)
    for name, server in servers.items():
        why = server.wait_healthy(30)
        if why is not None:
            raise SystemExit(f"{name} did not start: {why}")
    return ports


def body_facts(settings: Settings) -> dict[str, Any]:
    from models.tokens import count_anthropic_tokens

    body = big_body("big", settings.big_bytes)
    return {"bytes": len(json.dumps(body, separators=(",", ":"))), "messages": len(body["messages"]),
            "tokens": count_anthropic_tokens(body)}  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="6 rounds of 3 s windows (about a minute in all)")
    p.add_argument("--rounds", type=int, help="rounds of one baseline and one loaded window (quick 6, full 14)")
    p.add_argument("--window-seconds", type=float, help="length of each window (quick 3, full 5)")
    p.add_argument("--settle-seconds", type=float, default=0.5, help="discarded at the start of each window (0.5)")
    p.add_argument("--warmup-seconds", type=float, help=f"warm-up with the load on, discarded ({LAG_WINDOW_S + 2:g})")
    p.add_argument("--small-concurrency", type=int, default=4, help="small-stream client loops (4)")
    p.add_argument("--big-concurrency", type=int, default=2, help="background request loops (2)")
    p.add_argument("--big-kb", type=float, default=400, help="size of each background request body in KB (400)")
    p.add_argument("--big-delay-ms", type=float, default=0, help="mock delay before answering one (0: worst case)")
    p.add_argument("--small-words", type=int, default=16, help="chunks (and words) per small stream (16)")
    p.add_argument("--small-gap-ms", type=float, default=5.0, help="mock pause between small-stream chunks (5 ms)")
    p.add_argument("--no-control", action="store_true", help="no rig-control loop straight to the mock")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default %(default)s)")
    args = p.parse_args(argv)
    if args.small_concurrency < 1 or args.big_concurrency < 1:
        p.error("concurrencies must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    _, _, pin_text = oh.pinning(settings)  # type: ignore[arg-type]
    env = oh.environment(settings, pin_text)  # type: ignore[arg-type]
    for key in ("litellm", "skipped", "servers_skipped"):
        env.pop(key, None)
    env["uncommitted"] = soak.uncommitted()
    report: dict[str, Any] = {"environment": env, "settings": asdict(settings)}
    bigs = body_facts(settings)
    signal.signal(signal.SIGTERM, soak.interrupt)
    servers: dict[str, oh.Server] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="junction-hol-") as tmp, soak.stopping(servers):
            ports = start(settings, Path(tmp), servers, report)
            guard = oh.NoiseGuard(lambda: {os.getpid()} | {p for s in servers.values() for p in s.pids()})
            guard.start()
            results: list[Results] = []

            async def measure() -> None:
                results.append(await run(settings, servers, ports, report))

            soak.event_loop_runner()(measure())
            report["noise"] = guard.finish()
            report["rss_mb_after_run"] = {name: server.rss_mb() for name, server in servers.items()}
    except KeyboardInterrupt:
        log("interrupted: the servers were stopped")
        return 130
    env["loadavg_end"] = oh.loadavg()
    report["summary"] = summarize(results[0], settings, bigs)
    report["checks"] = checks(report["summary"])
    report["raw"] = {"lag_reads": results[0].lag, "round_p50s": results[0].rounds}
    print(render(report, settings))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {args.out}")
    return 0 if all(c["result"] == "PASS" for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
