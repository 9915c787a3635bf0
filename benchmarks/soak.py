#!/usr/bin/env python3
"""Bounded soak test of the Junction gateway: memory, file descriptors and upstream sockets under
sustained streaming load with client aborts and upstream errors (anchors (b) phase G, (c) R10/R23).

What runs (each a separate process on 127.0.0.1):
  mock     `junction mock-upstream`, pinned to CPU 0 with this client
  gateway  `junction serve`, pinned to CPU 1, with a config of healthy and faulty mock models

Load: `--concurrency` closed-loop client loops (default 32), each on its own keep-alive connection,
every request a stream, spread over four paths: OpenAI and Anthropic clients, each relayed to a
same-protocol mock model and translated to the other protocol's. Per request, independently:
  * `--error-rate` (5%) go to a faulty model, one of: HTTP 500 (no fallback), HTTP 529 with a
    fallback to a healthy model, a stream closed mid-way without its terminator, and a TCP reset
    before the headers; each has the outcome the client must see (5xx, a served fallback, an
    in-band error event, 5xx);
  * `--abort-rate` (10%) of the healthy streams are abandoned by the client mid-stream, after a
    random number of events (half with a FIN, half with a RST).

Every second the gateway's RSS (/proc/<pid>/status VmRSS), open FDs (/proc/<pid>/fd), threads,
CPU and its TCP sockets (its socket inodes matched in /proc/<pid>/net/tcp: to the mock port,
by state, and from clients) are sampled, with the mock's open-request count. Phases: idle,
load (`--minutes`; the first `--warmup-seconds` excluded from the fits), recovery (load stopped,
client connections closed). Targets: RSS slope after warm-up < 1 MB/min (least squares); no
growth of FDs or upstream sockets during load and a return to the idle level after it; no
upstream socket left in CLOSE_WAIT; the mock's open count back to 0; the gateway's in-flight
gauges back to 0; no "Task was destroyed but it is pending" or traceback in the gateway's log;
every request's outcome the one its path must produce.

Run it with the gateway's venv:
  .venv/bin/python benchmarks/soak.py --quick     # 1 minute of load, about 1.5 minutes in all
  .venv/bin/python benchmarks/soak.py             # 10 minutes of load, about 11 minutes in all
The Markdown report goes to stdout, progress to stderr, everything (samples included) to
benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead as oh  # shared: lean client, server processes, /proc readers

HOST = oh.HOST
DEFAULT_OUT = oh.ROOT / "benchmarks" / "results" / "soak.json"
GATEWAY_KEY = "jk-soak-not-a-secret"
MB = 1024 * 1024

# Targets from the issue.
RSS_SLOPE_MAX_MB_MIN = 1.0
# Allowed difference between the median of the last and the first third of the load window
# (FDs, upstream sockets): the counts move with the streams open at the sampling instant.
GROWTH_TOLERANCE = 3
# Allowed difference between the FDs after recovery and those of the idle gateway.
RECOVERY_TOLERANCE = 2

TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
              "0B": "CLOSING"}  # fmt: skip

# Gateway log lines that indicate a leak or a crash, by what they mean.
LOG_PATTERNS = {
    "pending task destroyed": "Task was destroyed but it is pending",
    "traceback": "Traceback (most recent call last)",
    "exception never retrieved": "exception was never retrieved",
    "unclosed resource": "Unclosed ",
    "ASGI exception": "Exception in ASGI application",
}
ACCESS_LINE = "INFO junction.access:"


def log(message: str) -> None:
    oh.log(message)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    minutes: float
    concurrency: int
    abort_rate: float
    error_rate: float
    warmup_s: float
    idle_s: float
    recovery_s: float
    words: int
    chunks: int
    gap_ms: float
    pin: bool
    seed: int

    @property
    def knobs(self) -> dict[str, str]:
        # Paced streams, like a model emitting tokens: the gateway holds each stream for a while.
        return oh.stream_knobs(self.words, self.chunks, self.gap_ms)

    @property
    def load_s(self) -> float:
        return self.minutes * 60


def settings_from(args: argparse.Namespace) -> Settings:
    minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 10.0)
    # 10% of the run, at least 20 s (the allocator's pools are still growing then), at most 60 s.
    warmup = args.warmup_seconds if args.warmup_seconds is not None else min(60.0, max(20.0, minutes * 6))
    for name, rate in (("--abort-rate", args.abort_rate), ("--error-rate", args.error_rate)):
        if not 0 <= rate < 1:
            raise SystemExit(f"{name} must be in [0, 1), got {rate}")
    if args.abort_rate + args.error_rate >= 1:
        raise SystemExit("--abort-rate + --error-rate must stay below 1")
    if warmup >= minutes * 60 * 0.75:
        raise SystemExit(f"the warm-up ({warmup:g} s) must leave most of the {minutes:g} min run for the fit")
    if args.chunks < 8:
        raise SystemExit("--chunks must be at least 8, so that an abort can land mid-stream")
    return Settings(
        minutes=minutes,
        concurrency=args.concurrency,
        abort_rate=args.abort_rate,
        error_rate=args.error_rate,
        warmup_s=warmup,
        idle_s=args.idle_seconds if args.idle_seconds is not None else (3.0 if args.quick else 10.0),
        recovery_s=args.recovery_seconds if args.recovery_seconds is not None else (10.0 if args.quick else 30.0),
        words=args.chunks,  # one word per chunk
        chunks=args.chunks,
        gap_ms=args.gap_ms,
        pin=not args.no_pin,
        seed=args.seed,
    )


# --------------------------------------------------------------------------------------------
# What the gateway serves, and what the client must see
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A mock model that fails every request the same way."""

    api: str  # the mock model's wire style
    knobs: dict[str, str]
    expect: frozenset[str]  # the client outcomes that are correct for it
    fallback: str | None = None


FAULTS = {
    "soak-err500": Fault("openai", {"status": "500"}, frozenset({"http_500"})),
    "soak-err529-fallback": Fault("anthropic", {"status": "529"}, frozenset({"ok_fallback"}), "soak-openai"),
    "soak-close": Fault("openai", {"fault": "close", "stall_after": "3"}, frozenset({"stream_error"})),
    "soak-reset": Fault("anthropic", {"fault": "reset"}, frozenset({"http_502"})),
}
HEALTHY = {"soak-openai": "openai", "soak-anthropic": "anthropic"}
PROTOCOLS = ("openai", "anthropic")


def gateway_config(mock_port: int, gw_port: int, settings: Settings) -> str:
    def provider(model: str, api: str, knobs: dict[str, str], extra: str = "") -> str:
        base = f"http://{HOST}:{mock_port}" + ("" if api == "anthropic" else "/v1")
        interface = "\n    provider_interface: anthropic" if api == "anthropic" else ""
        headers = oh.yaml_knob_headers(settings.knobs | knobs)
        return (f"  - model: mock/{model}\n    base_url: {base}{interface}\n    access_key: not-a-real-key\n"
                f"    headers:{headers}\n{extra}")  # fmt: skip

    providers = provider("soak-openai", "openai", {}, "    default: true\n")
    providers += provider("soak-anthropic", "anthropic", {})
    for model, fault in FAULTS.items():
        extra = f"    fallbacks: [{fault.fallback}]\n" if fault.fallback else ""
        providers += provider(model, fault.api, fault.knobs, extra)
    # failures_to_cool is out of reach so that every faulty request really reaches the mock: with
    # cooldowns the gateway would answer most of them itself and the error rate would not hold.
    return f"""version: v0.4.0
llm_providers:
{providers}failover:
  retries: 0
  failures_to_cool: 1000000000
timeouts:
  connect: 5s
  first_byte: 30s
  idle: 30s
  total: 120s
gateway_keys:
  - name: soak
    key: $JUNCTION_SOAK_KEY
    max_parallel: {2 * settings.concurrency}
listeners:
  - {{ type: model, name: soak, address: {HOST}, port: {gw_port} }}
"""


def route_name(protocol: str, model: str) -> str:
    upstream = FAULTS[model].api if model in FAULTS else HEALTHY[model]
    how = "relay" if upstream == protocol else "translated"
    return f"{protocol}->{model} ({how})"


@dataclass
class Job:
    kind: str  # "stream", "abort" or a fault model
    route: str
    protocol: str
    payload: bytes
    expect: frozenset[str]
    abort_after: int = 0  # body events after which the client leaves (0: read to the end)
    abort_delay: float = 0.0
    rst: bool = False


class Plan:
    """Draws the next request of a client loop: path, fault, abort point."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.payloads: dict[tuple[str, str], bytes] = {}
        for protocol in PROTOCOLS:
            for model in (*HEALTHY, *FAULTS):
                arm = oh.Arm(route_name(protocol, model), "junction", protocol, model,
                             oh.auth_headers(protocol, GATEWAY_KEY), None, port)  # fmt: skip
                self.payloads[(protocol, model)] = arm.payload(stream=True)
        self.dropped: dict[str, str] = {}  # route -> why it is not in the mix

    def job(self, protocol: str, model: str, kind: str) -> Job:
        expect = FAULTS[model].expect if model in FAULTS else frozenset({"ok"})
        return Job(kind, route_name(protocol, model), protocol, self.payloads[(protocol, model)], expect)

    def healthy_routes(self) -> list[tuple[str, str]]:
        return [(p, m) for p in PROTOCOLS for m in HEALTHY if route_name(p, m) not in self.dropped]

    def draw(self, rng: random.Random) -> Job:
        s = self.settings
        u = rng.random()
        if u < s.error_rate:
            return self.job(rng.choice(PROTOCOLS), rng.choice(list(FAULTS)), "fault")
        protocol, model = rng.choice(self.healthy_routes())
        if u >= s.error_rate + s.abort_rate:
            return self.job(protocol, model, "stream")
        job = self.job(protocol, model, "abort")
        # Mid-stream: after the first event and well before the last (both protocols send a few
        # more events than chunks), then a little later, while the gateway waits for the next chunk.
        job.abort_after = rng.randint(1, s.chunks - 2)
        job.abort_delay = rng.uniform(0, s.gap_ms / 2000)
        job.rst = rng.random() < 0.5
        job.expect = frozenset({"aborted", "abort_late"})
        return job


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class StreamConn(oh.Conn):
    """The benchmark's lean keep-alive connection, keeping the body, noting a served fallback,
    and able to walk away from a stream after a given number of events."""

    def __init__(self) -> None:
        super().__init__(keep_body=True)
        self.job: Job | None = None
        self.fallback = False
        self.aborted = False
        self._abort_timer: asyncio.TimerHandle | None = None

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()  # known before the body, even if we leave

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if name.lower() == b"x-junction-fallback-from":
            self.fallback = True

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        job = self.job
        if job is not None and job.abort_after and self.events >= job.abort_after and self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(job.abort_delay, self._abort)

    def _abort(self) -> None:
        if self.done is None or self.done.done() or self.transport is None:
            return  # the stream ended first
        self.aborted = self.closed = True
        if self.job is not None and self.job.rst:
            self.transport.abort()  # RST
        else:
            self.transport.close()  # FIN
        self.done.set_result(None)

    async def run(self, job: Job) -> str:
        """Send `job`; its outcome (see `classify`)."""
        self.job, self.fallback, self.aborted, self.status = job, False, False, 0
        self._abort_timer = None
        try:
            await self.request(job.payload)
        except TimeoutError:
            self.close()
            return "timeout"
        except ConnectionError:
            self.close()
            return "disconnect"
        finally:
            if self._abort_timer is not None:
                self._abort_timer.cancel()
            self.job = None
        if self.aborted:
            return "aborted"
        outcome = classify(job.protocol, self.status, bytes(self.body), self.fallback)
        return "abort_late" if job.kind == "abort" and outcome == "ok" else outcome


def classify(protocol: str, status: int, body: bytes, fallback: bool) -> str:
    """ok / ok_fallback: a complete, well-formed stream of the client's protocol with the whole
    reply; stream_error: an in-band error event and no terminator; bad_stream: neither; http_N."""
    if status != 200:
        return f"http_{status}"
    try:
        oh.reply_text(protocol, True, body)
    except (ValueError, KeyError, IndexError, TypeError):
        marker = b"event: error" if protocol == "anthropic" else b'data: {"error"'
        return "stream_error" if marker in body else "bad_stream"
    return "ok_fallback" if fallback else "ok"


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = await oh.connect(port, keep_body=True)
    try:
        status, *_ = await conn.request(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        return status, bytes(conn.body)
    finally:
        conn.close()


async def get_json(port: int, path: str) -> Any:
    with contextlib.suppress(OSError, ConnectionError, TimeoutError, ValueError):
        status, body = await http_get(port, path)
        if status == 200:
            return json.loads(body)
    return None


@dataclass
class Traffic:
    outcomes: Counter[str] = field(default_factory=Counter)  # by outcome
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)  # job kind (or fault model) -> outcomes
    by_route: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)  # "kind: outcome"
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first wrong outcomes, with their bodies
    ttfe_ms: list[float] = field(default_factory=list)  # healthy, complete streams only
    total_ms: list[float] = field(default_factory=list)
    done: int = 0

    def record(self, job: Job, outcome: str, conn: StreamConn, t0: float) -> None:
        self.done += 1
        self.outcomes[outcome] += 1
        kind = job.kind if job.kind != "fault" else job.route.split("->", 1)[1].split(" ", 1)[0]
        self.by_kind.setdefault(kind, Counter())[outcome] += 1
        self.by_route[job.route] += 1
        if outcome not in job.expect:
            self.unexpected[f"{kind}: {outcome}"] += 1
            if len(self.examples) < 20:
                self.examples.append({"at": time.strftime("%H:%M:%S"), "route": job.route, "outcome": outcome,
                                      "body": oh.short(bytes(conn.body), 300)})  # fmt: skip
        first_ms, total_ms = ((conn.t_first or conn.t_end) - t0) * 1000, (conn.t_end - t0) * 1000
        if outcome == "ok" and job.kind == "stream":
            self.ttfe_ms.append(first_ms)
            self.total_ms.append(total_ms)


async def client_loop(i: int, plan: Plan, port: int, stop: asyncio.Event, deadline: float, traffic: Traffic,
                      rng: random.Random) -> None:  # fmt: skip
    conn: StreamConn | None = None
    try:
        while not stop.is_set() and time.perf_counter() < deadline:
            if conn is None or conn.closed:
                if conn is not None:
                    conn.close()
                try:
                    loop = asyncio.get_running_loop()
                    _, conn = await loop.create_connection(StreamConn, HOST, port)
                except OSError:
                    traffic.outcomes["connect_error"] += 1  # a rig failure, not the gateway's
                    conn = None
                    await asyncio.sleep(0.1)
                    continue
            job = plan.draw(rng)
            t0 = time.perf_counter()
            traffic.record(job, await conn.run(job), conn, t0)
    finally:
        if conn is not None:
            conn.close()


async def probe_routes(plan: Plan, port: int) -> dict[str, str]:
    """One request per path and fault, both protocols, before the load: a path the gateway cannot
    serve (e.g. 501) is left out with the reason; a fault that behaves differently is reported."""
    results: dict[str, str] = {}
    for protocol in PROTOCOLS:
        for model in (*HEALTHY, *FAULTS):
            job = plan.job(protocol, model, "probe")
            try:
                _, conn = await asyncio.get_running_loop().create_connection(StreamConn, HOST, port)
            except OSError as exc:
                raise SystemExit(f"cannot connect to the gateway: {exc}") from None
            try:
                outcome = await conn.run(job)
            finally:
                conn.close()
            results[job.route] = outcome
            if outcome in job.expect:
                continue
            log(f"probe {job.route}: got {outcome}, expected {'/'.join(sorted(job.expect))}: "
                f"{oh.short(bytes(conn.body))}")  # fmt: skip
            if model in HEALTHY:
                plan.dropped[job.route] = f"probe answered {outcome}: {oh.short(bytes(conn.body), 120)}"
    if not plan.healthy_routes():
        raise SystemExit("no healthy path works through the gateway; nothing to soak")
    return results


# --------------------------------------------------------------------------------------------
# Sampling the gateway process
# --------------------------------------------------------------------------------------------


def status_fields(pid: int) -> dict[str, int]:
    """VmRSS (kB) and Threads from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


def socket_inodes(pid: int) -> tuple[int, set[int]]:
    """(open FDs, inodes of the sockets among them)."""
    fds = os.listdir(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return len(fds), inodes


def tcp_sockets(pid: int, inodes: set[int]) -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of the process's TCP sockets (IPv4 and IPv6)."""
    found = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            next(f, None)  # header
            for line in f:
                parts = line.split()
                if len(parts) > 9 and int(parts[9]) in inodes:
                    local, remote = parts[1], parts[2]
                    found.append((int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                                  TCP_STATES.get(parts[3], parts[3])))  # fmt: skip
    return found


@dataclass
class Sampler:
    """One row a second: what the gateway holds, and what the mock has open."""

    pid: int
    gw_port: int
    mock_port: int
    traffic: Traffic
    rows: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "idle"
    t0: float = field(default_factory=time.perf_counter)
    gateway_exit: str | None = None

    def take(self, mock_open: int | None) -> dict[str, Any] | None:
        try:
            status = status_fields(self.pid)
            fds, inodes = socket_inodes(self.pid)
        except (OSError, ValueError) as exc:
            self.gateway_exit = f"gateway process unreadable ({exc}): it exited"
            return None
        upstream: Counter[str] = Counter()
        clients = 0
        for local, remote, state in tcp_sockets(self.pid, inodes):
            if remote == self.mock_port:
                upstream[state] += 1
            elif local == self.gw_port and state != "LISTEN":
                clients += 1
        row = {
            "t": round(time.perf_counter() - self.t0, 2),
            "phase": self.phase,
            "rss_mb": round(status.get("VmRSS", 0) / 1024, 2),
            "fds": fds,
            "threads": status.get("Threads"),
            "upstream": sum(upstream.values()),
            "upstream_established": upstream.get("ESTABLISHED", 0),
            "upstream_close_wait": upstream.get("CLOSE_WAIT", 0),
            "upstream_states": dict(upstream),
            "client_sockets": clients,
            "cpu_s": round(oh.cpu_seconds([self.pid]), 2),
            "mock_open": mock_open,
            "requests_done": self.traffic.done,
        }
        self.rows.append(row)
        return row

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; a dead gateway sets `stop` too, so the load ends at once."""
        next_at = time.perf_counter()
        while not stop.is_set():
            stats = await get_json(self.mock_port, "/_mock/stats")
            if self.take(stats.get("open") if isinstance(stats, dict) else None) is None:
                stop.set()
                return
            next_at += 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.perf_counter()))


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


async def phase(sampler: Sampler, name: str, seconds: float, until: Any = None) -> None:
    """Sample for `seconds`, or until `until()` is true, whichever comes first."""
    sampler.phase = name
    stop = asyncio.Event()
    task = asyncio.create_task(sampler.run(stop))
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline and not task.done():
            if until is not None and await until():
                break
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await task


async def soak(settings: Settings, servers: dict[str, oh.Server], gw_port: int, mock_port: int,
               report: dict[str, Any]) -> None:  # fmt: skip
    _, rig_cpus, _ = oh.pinning(settings)  # type: ignore[arg-type]
    if rig_cpus:
        os.sched_setaffinity(0, {int(rig_cpus)})  # the client shares CPU 0 with the mock
    plan = Plan(settings, gw_port)
    report["probes"] = await probe_routes(plan, gw_port)
    report["dropped_routes"] = plan.dropped
    traffic = Traffic()
    gateway = servers["junction"]
    assert gateway.proc is not None
    sampler = Sampler(gateway.proc.pid, gw_port, mock_port, traffic)
    report["samples"] = sampler.rows

    log(f"idle {settings.idle_s:g} s...")
    await phase(sampler, "idle", settings.idle_s)
    mock_before = await get_json(mock_port, "/_mock/stats") or {}

    log(f"load: {settings.minutes:g} min at c={settings.concurrency}, {settings.abort_rate:.0%} client aborts, "
        f"{settings.error_rate:.0%} upstream errors (warm-up {settings.warmup_s:g} s)...")  # fmt: skip
    stop = asyncio.Event()
    sampler.phase = "load"
    load_started = time.perf_counter()
    deadline = load_started + settings.load_s
    sampling = asyncio.create_task(sampler.run(stop))
    loops = [asyncio.create_task(client_loop(i, plan, gw_port, stop, deadline, traffic,
                                             random.Random(settings.seed * 1000 + i)))
             for i in range(settings.concurrency)]  # fmt: skip
    progress_at = load_started + 60
    try:
        while time.perf_counter() < deadline and not stop.is_set():
            await asyncio.sleep(0.5)
            if time.perf_counter() >= progress_at and sampler.rows:
                row = sampler.rows[-1]
                log(f"  {row['t']:.0f} s: {traffic.done} requests, RSS {row['rss_mb']} MB, {row['fds']} FDs, "
                    f"{row['upstream']} upstream sockets")  # fmt: skip
                progress_at += 60
        # Each loop ends after its request in flight (bounded by the client's request timeout).
        await asyncio.gather(*loops)
    finally:
        stop.set()
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, sampling, return_exceptions=True)
    load_s = time.perf_counter() - load_started
    if sampler.gateway_exit:
        report["gateway_exit"] = sampler.gateway_exit
        log(sampler.gateway_exit)
        return

    log(f"recovery {settings.recovery_s:g} s (load stopped, client connections closed)...")
    recovered_at: dict[str, float] = {}
    recovery_started = time.perf_counter()

    async def mock_idle() -> bool:
        stats = await get_json(mock_port, "/_mock/stats")
        if isinstance(stats, dict) and stats.get("open") == 0 and "mock_open_zero_s" not in recovered_at:
            recovered_at["mock_open_zero_s"] = round(time.perf_counter() - recovery_started, 2)
        return False  # always sample the whole recovery: sockets and FDs settle later

    await phase(sampler, "recovery", settings.recovery_s, mock_idle)
    report["traffic"] = traffic_summary(traffic, load_s, plan)
    report["mock"] = {"before_load": mock_before, "after_recovery": await get_json(mock_port, "/_mock/stats"),
                      **recovered_at}  # fmt: skip
    report["gateway_metrics"] = await gateway_gauges(gw_port)


async def gateway_gauges(port: int) -> dict[str, float]:
    """In-flight gauges and client-disconnect count from the gateway's /metrics."""
    with contextlib.suppress(OSError, ConnectionError, TimeoutError):
        status, body = await http_get(port, "/metrics")
        if status == 200:
            out: dict[str, float] = {}
            for line in body.decode(errors="replace").splitlines():
                name, _, value = line.partition(" ")
                metric = name.split("{", 1)[0]
                if metric in ("junction_requests_in_flight", "junction_streams_in_flight",
                              "junction_client_disconnects_total"):  # fmt: skip
                    with contextlib.suppress(ValueError):
                        out[metric] = out.get(metric, 0.0) + float(value)
            return out
    return {}


def traffic_summary(t: Traffic, load_s: float, plan: Plan) -> dict[str, Any]:
    return {
        "requests": t.done,
        "seconds": round(load_s, 1),
        "requests_per_s": round(t.done / load_s, 1) if load_s else None,
        "outcomes": dict(t.outcomes.most_common()),
        "by_kind": {k: dict(v.most_common()) for k, v in sorted(t.by_kind.items())},
        "by_route": dict(sorted(t.by_route.items())),
        "unexpected": dict(t.unexpected.most_common()),
        "unexpected_examples": t.examples,
        "client_aborts": t.outcomes["aborted"],
        "ttfe_ms": oh.describe(t.ttfe_ms),
        "stream_ms": oh.describe(t.total_ms),
        "dropped_routes": plan.dropped,
    }


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


def slope_per_min(rows: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares slope of `key` against time, per minute."""
    points = [(r["t"], r[key]) for r in rows if r.get(key) is not None]
    if len(points) < 3 or len({t for t, _ in points}) < 2:
        return None
    fit = statistics.linear_regression([t for t, _ in points], [v for _, v in points])
    return fit.slope * 60


def thirds(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """Median of `key` over the first and the last third of `rows`."""
    n = max(1, len(rows) // 3)
    return statistics.median(r[key] for r in rows[:n]), statistics.median(r[key] for r in rows[-n:])


def scan_log(path: Path, offset: int) -> dict[str, Any]:
    """Leak and crash markers in the gateway's log, split at `offset` (bytes written by the end of
    the recovery phase) into the run and the shutdown; plus the first non-access-log lines."""
    found = {"run": Counter[str](), "shutdown": Counter[str]()}
    notable: list[str] = []
    position = 0
    with contextlib.suppress(OSError), open(path, "rb") as f:
        for raw in f:
            part = "run" if position < offset else "shutdown"
            position += len(raw)
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(ACCESS_LINE):
                continue
            for kind, marker in LOG_PATTERNS.items():
                if marker in line:
                    found[part][kind] += 1
            if len(notable) < 60 and line.strip():
                notable.append(line[:400])
    return {"run": dict(found["run"]), "shutdown": dict(found["shutdown"]), "notable_lines": notable}


def analyse(report: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The checks against the targets: name, value, target, PASS/FAIL."""
    rows = report["samples"]
    idle = [r for r in rows if r["phase"] == "idle"]
    load = [r for r in rows if r["phase"] == "load"]
    recovery = [r for r in rows if r["phase"] == "recovery"]
    load_t0 = load[0]["t"] if load else 0.0
    window = [r for r in load if r["t"] - load_t0 >= settings.warmup_s]
    checks: list[dict[str, Any]] = []

    def check(name: str, value: str, target: str, ok: bool) -> None:
        checks.append({"check": name, "value": value, "target": target, "result": "PASS" if ok else "FAIL"})

    if report.get("gateway_exit") or len(window) < 3 or not idle or not recovery:
        check("gateway alive for the whole run", report.get("gateway_exit") or "too few samples", "alive", False)
        return checks
    last = recovery[-1]
    idle_rss = statistics.median(r["rss_mb"] for r in idle)
    # Upstream keep-alive sockets aside, here and after recovery: pooled connections are not leaks.
    idle_fds = min(r["fds"] - r["upstream"] for r in idle)

    slope = slope_per_min(window, "rss_mb")
    late_slope = slope_per_min(window[len(window) // 2 :], "rss_mb")
    rss = (f"{slope:+.3f} MB/min (last half {late_slope:+.3f}); idle {idle_rss:.1f}, after warm-up "
           f"{window[0]['rss_mb']:.1f}, end {window[-1]['rss_mb']:.1f}, max {max(r['rss_mb'] for r in load):.1f}, "
           f"after recovery {last['rss_mb']:.1f} MB")  # fmt: skip
    check("RSS slope after warm-up (least squares)", rss, f"< {RSS_SLOPE_MAX_MB_MIN:g} MB/min",
          slope is not None and slope < RSS_SLOPE_MAX_MB_MIN)  # fmt: skip

    early, late = thirds(window, "fds")
    recovered_fds = last["fds"] - last["upstream"]
    fds = (f"start {window[0]['fds']}, end {window[-1]['fds']}, max {max(r['fds'] for r in load)}; median first/last "
           f"third {early:g}/{late:g}; idle {idle_fds}, after recovery {recovered_fds} (upstream sockets aside)")  # fmt: skip
    check("open FDs", fds, f"no growth (last − first third ≤ {GROWTH_TOLERANCE}); after recovery ≤ idle + "
          f"{RECOVERY_TOLERANCE}",
          late - early <= GROWTH_TOLERANCE and recovered_fds <= idle_fds + RECOVERY_TOLERANCE)  # fmt: skip

    early, late = thirds(window, "upstream")
    cap = 2 * settings.concurrency
    close_wait = max(r["upstream_close_wait"] for r in window + recovery)
    sockets = (f"start {window[0]['upstream']}, end {window[-1]['upstream']}, max {max(r['upstream'] for r in load)}; "
               f"median first/last third {early:g}/{late:g}; after recovery {last['upstream']} "
               f"({last['upstream_states'] or 'none'}); CLOSE_WAIT max {close_wait}")  # fmt: skip
    check("upstream sockets (gateway → mock)", sockets,
          f"no growth (≤ {GROWTH_TOLERANCE}), max ≤ {cap}, no CLOSE_WAIT at the end",
          late - early <= GROWTH_TOLERANCE and max(r["upstream"] for r in load) <= cap
          and last["upstream_close_wait"] == 0)  # fmt: skip

    check("client sockets after recovery", str(last["client_sockets"]), "0", last["client_sockets"] == 0)

    threads = f"idle {idle[-1]['threads']}, max {max(r['threads'] for r in load)}, after recovery {last['threads']}"
    check("threads", threads, "no growth", max(r["threads"] for r in window[-len(window) // 3 :])
          <= max(r["threads"] for r in window[: max(1, len(window) // 3)]))  # fmt: skip

    mock = report.get("mock", {})
    after = mock.get("after_recovery") or {}
    when = f" (reached 0 after {mock['mock_open_zero_s']} s)" if "mock_open_zero_s" in mock else ""
    counters = (f"{after.get('open')}{when}; aborted {after.get('aborted')} (client aborts "
                f"{report['traffic']['client_aborts']}), completed {after.get('completed')}, received "
                f"{after.get('received')}")  # fmt: skip
    check("mock open requests after load", counters, "0", after.get("open") == 0)

    gauges = report.get("gateway_metrics") or {}
    in_flight = {k.removeprefix("junction_"): v for k, v in gauges.items() if k.endswith("in_flight")}
    check("gateway in-flight gauges after load", ", ".join(f"{k} {v:g}" for k, v in in_flight.items()) or "n/a",
          "0", bool(in_flight) and all(v == 0 for v in in_flight.values()))  # fmt: skip

    logs = report["log"]
    run_hits, shutdown_hits = logs["run"], logs["shutdown"]
    described = ", ".join(f"{k} {v}" for k, v in run_hits.items()) or "none"
    if shutdown_hits:
        described += "; at shutdown: " + ", ".join(f"{k} {v}" for k, v in shutdown_hits.items())
    check("gateway log: pending tasks destroyed, tracebacks", described, "none", not run_hits and not shutdown_hits)

    traffic = report["traffic"]
    bad = sum(traffic["unexpected"].values())
    detail = ", ".join(f"{k} {v}" for k, v in traffic["unexpected"].items())
    check("requests with a wrong outcome", f"{bad} of {traffic['requests']}" + (f" ({detail})" if detail else ""),
          "0", bad == 0)  # fmt: skip
    return checks


def render(report: dict[str, Any], settings: Settings) -> str:
    env, traffic = report["environment"], report.get("traffic") or {}
    machine = (f"{env['when']} · {env['cpu_model']} · {env['nproc']} CPUs · pinning: {env['pinning']} · "
               f"junction {env['versions'].get('junction-gateway')} ({env.get('commit')}"
               f"{' + uncommitted changes' if env.get('uncommitted') else ''})")  # fmt: skip
    shape = (f"{settings.minutes:g} min at c={settings.concurrency}, {settings.abort_rate:.0%} client aborts, "
             f"{settings.error_rate:.0%} upstream errors; warm-up {settings.warmup_s:g} s excluded from the fits; "
             f"streams of {settings.chunks} chunks {settings.gap_ms:g} ms apart")  # fmt: skip
    lines = ["## Junction soak test", "", machine, shape, "", "| check | measured | target | result |",
             "|---|---|---|---|"]  # fmt: skip
    for c in report["checks"]:
        lines.append(f"| {c['check']} | {c['value']} | {c['target']} | **{c['result']}** |")
    if traffic:
        outcomes = ", ".join(f"{k} {v}" for k, v in traffic["outcomes"].items())
        lines += ["", (f"- requests: {traffic['requests']} in {traffic['seconds']} s "
                       f"({traffic['requests_per_s']}/s); client aborts {traffic['client_aborts']}; "
                       f"outcomes: {outcomes}")]  # fmt: skip
        lines.append("- by kind: " + "; ".join(f"{k}: " + ", ".join(f"{o} {n}" for o, n in v.items())
                                              for k, v in traffic["by_kind"].items()))  # fmt: skip
        ttfe, total = traffic["ttfe_ms"], traffic["stream_ms"]
        if ttfe.get("n"):
            lines.append(f"- complete healthy streams: time to first byte p50 {ttfe['p50']:.1f} ms, p99 "
                         f"{ttfe['p99']:.1f} ms; whole stream p50 {total['p50']:.0f} ms, p99 {total['p99']:.0f} ms")  # fmt: skip
        gauges = report.get("gateway_metrics") or {}
        if "junction_client_disconnects_total" in gauges:
            lines.append(f"- gateway counted {gauges['junction_client_disconnects_total']:g} client disconnects "
                         f"(client aborted {traffic['client_aborts']})")  # fmt: skip
        for example in traffic["unexpected_examples"][:3]:
            lines.append(f"- wrong outcome at {example['at']}: {example['route']} -> {example['outcome']}: "
                         f"{example['body']}")  # fmt: skip
        for route, why in traffic["dropped_routes"].items():
            lines.append(f"- left out: {route}: {why}")
    cpu = report.get("gateway_cpu_pct")
    if cpu is not None:
        lines.append(f"- gateway CPU during load: {cpu:.0f}% of one core")
    noise = report.get("noise")
    if noise:
        lines.append("- noise: " + oh.noise_summary(noise, "latencies and CPU not comparable; memory checks unaffected"))
    verdict = "PASS" if report["checks"] and all(c["result"] == "PASS" for c in report["checks"]) else "FAIL"
    lines += ["", f"**Overall: {verdict}**"]
    return "\n".join(lines)


def load_cpu_pct(rows: list[dict[str, Any]]) -> float | None:
    load = [r for r in rows if r["phase"] == "load"]
    if len(load) < 2 or load[-1]["t"] <= load[0]["t"]:
        return None
    return 100 * (load[-1]["cpu_s"] - load[0]["cpu_s"]) / (load[-1]["t"] - load[0]["t"])


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def start(settings: Settings, workdir: Path, servers: dict[str, oh.Server], report: dict[str, Any]) -> tuple[int, int]:
    """Start the mock and the gateway; fills `servers` as it goes, so the caller can stop
    whatever started even if this fails."""
    proxy_cpus, rig_cpus, _ = oh.pinning(settings)  # type: ignore[arg-type]
    mock_port, gw_port = oh.free_port(), oh.free_port()
    config = workdir / "junction.yaml"
    config.write_text(gateway_config(mock_port, gw_port, settings))
    report["config"] = config.read_text()
    junction = Path(sys.executable).with_name("junction")
    servers["mock"] = oh.Server("mock", oh.mock_argv(mock_port), mock_port, "/_mock/health", workdir / "mock.log")
    # INFO: the access log is on, as in a deployment, so its cost and memory are part of the soak.
    argv = [str(junction), "serve", "--config", str(config), "--host", HOST, "--port", str(gw_port),
            "--log-level", "info"]  # fmt: skip
    servers["junction"] = oh.Server("junction", argv, gw_port, "/healthz", workdir / "junction.log")
    servers["mock"].start(dict(os.environ), rig_cpus)
    # PYTHONASYNCIODEBUG stays off: debug mode keeps tracebacks per task and would be the leak.
    servers["junction"].start(dict(os.environ, JUNCTION_SOAK_KEY=GATEWAY_KEY), proxy_cpus)
    for name, server in servers.items():
        why = server.wait_healthy(30)
        if why is not None:
            raise SystemExit(f"{name} did not start: {why}")
    return mock_port, gw_port


def uncommitted() -> list[str]:
    """Files of the gateway's packages that differ from the recorded commit (they were measured too)."""
    out = subprocess.run(["git", "status", "--porcelain", "--", "gateway", "models", "router"], cwd=oh.ROOT,
                         capture_output=True, text=True, check=False)  # fmt: skip
    return [line[3:] for line in out.stdout.splitlines()]


def interrupt(signum: int, frame: Any) -> None:
    """SIGTERM takes Ctrl-C's path, so the servers are always stopped."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def stopping(servers: dict[str, oh.Server]) -> Iterator[None]:
    """Stop every server in `servers` on the way out, however the block ends."""
    try:
        yield
    finally:
        for server in servers.values():
            server.stop()


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    if oh.uvloop_available():
        import uvloop

        return uvloop.run
    return asyncio.run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="1 minute of load, shorter idle and recovery phases")
    p.add_argument("--minutes", type=float, help="minutes of load (default 10; --quick 1)")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent client streams (default 32)")
    p.add_argument("--abort-rate", type=float, default=0.1, help="share of streams the client abandons (0.1)")
    p.add_argument("--error-rate", type=float, default=0.05, help="share of requests to a faulty upstream (0.05)")
    p.add_argument("--warmup-seconds", type=float, help="load excluded from the fits (default 10%% of the run, "
                   "20 to 60 s)")  # fmt: skip
    p.add_argument("--idle-seconds", type=float, help="idle sampling before the load (10; --quick 3)")
    p.add_argument("--recovery-seconds", type=float, help="sampling after the load (30; --quick 10)")
    p.add_argument("--chunks", type=int, default=32, help="chunks (and words) per mock stream (32)")
    p.add_argument("--gap-ms", type=float, default=10.0, help="mock pause between chunks (10 ms)")
    p.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default %(default)s)")
    args = p.parse_args(argv)
    if args.concurrency < 1:
        p.error("--concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    _, _, pin_text = oh.pinning(settings)  # type: ignore[arg-type]
    env = oh.environment(settings, pin_text)  # type: ignore[arg-type]
    for key in ("litellm", "skipped", "servers_skipped"):
        env.pop(key, None)
    env["uncommitted"] = uncommitted()
    report: dict[str, Any] = {"environment": env, "settings": asdict(settings), "samples": []}
    signal.signal(signal.SIGTERM, interrupt)
    servers: dict[str, oh.Server] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="junction-soak-") as tmp:
            with stopping(servers):
                mock_port, gw_port = start(settings, Path(tmp), servers, report)
                guard = oh.NoiseGuard(lambda: {os.getpid()} | {p for s in servers.values() for p in s.pids()})
                guard.start()
                event_loop_runner()(soak(settings, servers, gw_port, mock_port, report))
                report["noise"] = guard.finish()
                log_path = servers["junction"].log_path
                offset = log_path.stat().st_size  # what follows is the shutdown
            report["log"] = scan_log(log_path, offset)
    except KeyboardInterrupt:
        log("interrupted: the servers were stopped")
        return 130
    env["loadavg_end"] = oh.loadavg()
    report["gateway_cpu_pct"] = load_cpu_pct(report["samples"])
    report["checks"] = analyse(report, settings)
    print(render(report, settings))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {args.out}")
    return 0 if all(c["result"] == "PASS" for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
