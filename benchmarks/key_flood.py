#!/usr/bin/env python3
"""Key-flood benchmark of the Junction gateway: wrong gateway keys at c=64 must all be rejected
quickly and cheaply, with nothing sent upstream (scenario S2 of shared/docs/gateway-anchors.md (c),
AIGatewayBench `security_key_flood`).

What runs (each a separate process on 127.0.0.1):
  mock     `python -m gateway.mock_upstream`, pinned to CPU 0 with this client
  gateway  `python -m gateway.cli serve`, one worker, pinned to CPU 1, access log off; its config
           has four gateway keys (one from the environment, a literal one, one stored as sha256 and
           a bare string) and two mock models (OpenAI style and Anthropic style)

Traffic: `--requests` (10,000; `--quick` 2,000) requests with wrong keys, spread over both
/v1/messages (Anthropic client) and /v1/chat/completions (OpenAI client), at `--concurrency` 64
over keep-alive connections, in six equal kinds:
  random x-api-key     a random 40-character key in `x-api-key`
  random bearer        the same, as `Authorization: Bearer`
  missing key          no credential header at all
  malformed auth       `Authorization` values that are not a usable Bearer token: no token, Basic,
                       Digest, another scheme (also with a real key), SQL/JSON metacharacters,
                       unexpanded `${VAR}`, UTF-8, two Authorization headers, ...
  oversized key        a 4 KB random key, as `x-api-key` or Bearer
  real key's prefix    a real key with its tail replaced, cut by one, extended by one, one character
                       changed, upper-cased, or the stored sha256 digest presented as the key
One request in `--control-every` (50) is a control: a valid key (rotating over the four), to show
that legitimate traffic is still served during the flood, and at what latency.

Phases: probes (every kind on both paths, each valid key on both paths, c=1); rejections over one
connection (the service time without queueing); warm-up at c=64, valid and wrong keys (discarded);
valid keys only at c=64 (no flood: the control's reference and the CPU a valid request costs); the
flood itself.

Measured: client-side latency of every rejection (write to last byte) p50/p99/max; gateway CPU
seconds per 1,000 rejections from /proc/<pid>/stat of its process tree (the control requests'
share taken off with the valid-only phase's cost per request); gateway RSS before and after;
storage writes and log bytes during the flood. Checked: every wrong-key answer is a 401 in the
client's protocol (Anthropic `{"type":"error","error":{"type":"authentication_error",...}}`, OpenAI
`{"error":{...}}`) that does not echo the presented key; the mock received no flood request
(`/_mock/stats` against the valid requests sent, the recorded bodies in `/_mock/requests`, and the
gateway's own upstream count in /metrics); every control request is served.

Target: rejection p99 < 5 ms at c=64 (printed as met/missed). The exit status is 1 when any
wrong-key answer was not a proper 401, the upstream saw any flood request, or a control request
failed; 0 otherwise.

Run it with the gateway's venv:
  .venv/bin/python benchmarks/key_flood.py --quick    # about 5 s
  .venv/bin/python benchmarks/key_flood.py            # about 10 s
The Markdown report goes to stdout, progress to stderr, everything to
benchmarks/results/key_flood.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import signal
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead as oh  # shared: lean client, server processes, /proc readers, statistics
import soak  # shared: run helpers (stopping servers, event loop, small GETs)

HOST = oh.HOST
DEFAULT_OUT = oh.ROOT / "benchmarks" / "results" / "key_flood.json"
P99_TARGET_MS = 5.0

# The gateway's keys for this run (not secrets: a throw-away config on 127.0.0.1).
ENV_KEY = "jk-flood-env-not-a-secret-0123456789abcd"
LITERAL_KEY = "jk-flood-literal-not-a-secret-456789abcd"
HASHED_KEY = "jk-flood-hashed-not-a-secret-0123456789a"
BARE_KEY = "jk-flood-bare-not-a-secret-0123456789abc"
REAL_KEYS = (ENV_KEY, LITERAL_KEY, HASHED_KEY, BARE_KEY)
KEY_ENV_VAR = "JUNCTION_FLOOD_KEY"

KINDS = ("random x-api-key", "random bearer", "missing key", "malformed auth", "oversized key",
         "real key's prefix")  # fmt: skip
PROTOCOLS = ("anthropic", "openai")
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
MODELS = {"anthropic": "flood-anthropic", "openai": "flood-openai"}
FLOOD_MARKER = "key-flood request"  # in every wrong-key body, looked for in what the mock recorded
ALPHABET = string.ascii_letters + string.digits
OVERSIZED = 4096


def log(message: str) -> None:
    oh.log(message)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    requests: int  # wrong-key requests of the flood
    concurrency: int
    control_every: int  # one valid-key request per this many flood requests (0: none)
    warmup: int  # wrong-key requests of the warm-up (with 2 x concurrency valid ones), discarded
    single: int  # wrong-key requests over one connection (the service time without queueing)
    baseline: int  # valid-key requests at `concurrency` with no flood
    seed: int
    pin: bool

    @property
    def knobs(self) -> dict[str, str]:
        return {}  # the mock's default reply; the control requests only need to be served


def settings_from(args: argparse.Namespace) -> Settings:
    def pick(given: Any, quick: Any, full: Any) -> Any:
        return given if given is not None else (quick if args.quick else full)

    settings = Settings(
        requests=pick(args.requests, 2000, 10_000),
        concurrency=args.concurrency,
        control_every=args.control_every,
        warmup=pick(args.warmup, 200, 500),
        single=pick(args.single, 300, 1000),
        baseline=pick(args.baseline, 300, 1000),
        seed=args.seed,
        pin=not args.no_pin,
    )
    if settings.requests < 1 or settings.concurrency < 1 or settings.control_every < 0:
        raise SystemExit("--requests and --concurrency must be at least 1, --control-every at least 0")
    return settings


def gateway_config(mock_port: int, gw_port: int) -> str:
    digest = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    return f"""version: v0.4.0
llm_providers:
  - model: mock/{MODELS["openai"]}
    base_url: http://{HOST}:{mock_port}/v1
    access_key: not-a-real-key
    default: true
  - model: mock/{MODELS["anthropic"]}
    base_url: http://{HOST}:{mock_port}
    provider_interface: anthropic
    access_key: not-a-real-key
failover:
  retries: 0
gateway_keys:
  - name: flood-env
    key: ${KEY_ENV_VAR}
  - name: flood-literal
    key: {LITERAL_KEY}
  - name: flood-hashed
    sha256: {digest}
  - {BARE_KEY}
listeners:
  - {{ type: model, name: flood, address: {HOST}, port: {gw_port} }}
"""


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@dataclass
class Job:
    kind: str  # one of KINDS, or "control"
    variant: str  # how the credential was made (for the record)
    protocol: str
    payload: bytes
    presented: str | None  # the credential sent, when a leak of it into the answer would matter

    @property
    def control(self) -> bool:
        return self.kind == "control"


def request_bytes(port: int, protocol: str, headers: list[tuple[str, str]], text: str) -> bytes:
    """One POST, with a minimal body valid in the client's protocol; header values go out as UTF-8."""
    body = {"model": MODELS[protocol], "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    raw = json.dumps(body, separators=(",", ":")).encode()
    head = [("Host", f"{HOST}:{port}"), ("Content-Type", "application/json"), ("Content-Length", str(len(raw)))]
    if protocol == "anthropic":
        head.append(("anthropic-version", "2023-06-01"))
    lines = [f"POST {PATHS[protocol]} HTTP/1.1".encode()]
    lines += [f"{name}: {value}".encode() for name, value in head + headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + raw


def random_key(rng: random.Random, n: int = 40) -> str:
    return "".join(rng.choices(ALPHABET, k=n))


def as_credential(rng: random.Random, key: str) -> tuple[str, list[tuple[str, str]]]:
    """`key` as x-api-key or as a Bearer token, half and half."""
    if rng.random() < 0.5:
        return "x-api-key", [("x-api-key", key)]
    return "bearer", [("Authorization", f"Bearer {key}")]


def malformed(rng: random.Random) -> tuple[str, list[tuple[str, str]], str | None]:
    """An Authorization header (or two) that carries no usable Bearer token: (variant, headers, key)."""
    key, real = random_key(rng), rng.choice(REAL_KEYS)
    basic = base64.b64encode(f"admin:{key}".encode()).decode()
    variants: list[tuple[str, list[str], str | None]] = [
        ("scheme only", ["Bearer"], None),
        ("scheme and blanks", ["Bearer    "], None),
        ("Basic", [f"Basic {basic}"], None),
        ("Digest", [f'Digest username="admin", realm="junction", response="{key}"'], key),
        ("other scheme, real key", [f"Token {real}"], None),
        ("Basic scheme, real key", [f"Basic {real}"], None),
        ("no scheme", [key], key),
        ("no scheme, real key", [real], None),
        ("three tokens", [f"Bearer {key} {random_key(rng, 8)} {random_key(rng, 8)}"], key),
        ("SQL metacharacters", [f"Bearer ' OR '1'='1' --{key[:8]}"], None),
        ("JSON", [f'Bearer {{"key": "{key}", "admin": true}}'], key),
        ("unexpanded variable", [f"Bearer ${{{KEY_ENV_VAR}}}"], None),
        ("null", ["Bearer null"], None),
        ("UTF-8", [f"Bearer ключ-{key[:12]}-\U0001f511"], None),
        ("percent-encoded", [f"Bearer%20{key}"], key),
        ("two Authorization headers", [f"Bearer {key}", f"Bearer {random_key(rng)}"], key),
    ]
    name, values, presented = rng.choice(variants)
    return name, [("Authorization", value) for value in values], presented


def near_miss(rng: random.Random) -> tuple[str, str]:
    """A key that shares a real key's prefix (or is otherwise one step from it), never a real key."""
    real = rng.choice(REAL_KEYS)
    while True:
        variant = rng.choice(("tail replaced", "cut by one", "one more character", "one character changed",
                              "upper-cased", "sha256 digest as the key"))  # fmt: skip
        if variant == "tail replaced":
            keep = rng.randint(8, len(real) - 1)
            key = real[:keep] + random_key(rng, len(real) - keep)
        elif variant == "cut by one":
            key = real[:-1]
        elif variant == "one more character":
            key = real + rng.choice(ALPHABET)
        elif variant == "one character changed":
            at = rng.randrange(len(real))
            key = real[:at] + rng.choice(ALPHABET.replace(real[at], "")) + real[at + 1 :]
        elif variant == "upper-cased":
            key = real.upper()
        else:
            key = hashlib.sha256(real.encode()).hexdigest()
        if key.strip() not in REAL_KEYS:
            return variant, key


def flood_job(rng: random.Random, port: int, kind: str, protocol: str, n: int) -> Job:
    text = f"{FLOOD_MARKER} {n}"
    presented: str | None = None
    if kind in ("random x-api-key", "random bearer"):
        presented = random_key(rng)
        variant = "x-api-key" if kind == "random x-api-key" else "bearer"
        headers = [("x-api-key", presented)] if variant == "x-api-key" else [("Authorization", f"Bearer {presented}")]
    elif kind == "missing key":
        variant, headers = "no credential header", []
    elif kind == "malformed auth":
        variant, headers, presented = malformed(rng)
    elif kind == "oversized key":
        presented = random_key(rng, OVERSIZED)
        variant, headers = as_credential(rng, presented)
    else:
        variant, presented = near_miss(rng)
        how, headers = as_credential(rng, presented)
        variant = f"{variant} ({how})"
    return Job(kind, variant, protocol, request_bytes(port, protocol, headers, text), presented)


def control_job(port: int, protocol: str, key: str, n: int) -> Job:
    _, headers = as_credential(random.Random(n), key)
    return Job("control", f"valid key {REAL_KEYS.index(key)}", protocol,
               request_bytes(port, protocol, headers, f"control request {n}"), None)  # fmt: skip


class Plan:
    """The request lists of every phase, made before anything is timed."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.rng = random.Random(settings.seed)
        self.port = port
        self.n = 0
        self.valid = 0  # valid-key requests made (each one reaches the mock exactly once when served)

    def _next(self) -> int:
        self.n += 1
        return self.n

    def flood(self, count: int, control_every: int = 0) -> list[Job]:
        """`count` wrong-key requests, kinds and protocols in equal shares in a random order, with a
        control request in the middle of every `control_every`."""
        cells = [(kind, protocol) for kind in KINDS for protocol in PROTOCOLS]
        order = [cells[i % len(cells)] for i in range(count)]
        self.rng.shuffle(order)
        jobs: list[Job] = []
        for i, (kind, protocol) in enumerate(order):
            if control_every and i % control_every == control_every // 2:
                jobs.append(self.control(1)[0])
            jobs.append(flood_job(self.rng, self.port, kind, protocol, self._next()))
        return jobs

    def control(self, count: int) -> list[Job]:
        jobs = []
        for _ in range(count):
            n = self._next()
            jobs.append(control_job(self.port, PROTOCOLS[self.valid % 2], REAL_KEYS[(self.valid // 2) % 4], n))
            self.valid += 1
        return jobs

    def probes(self) -> list[Job]:
        """Every kind on both paths, and every valid key on both paths."""
        jobs = [flood_job(self.rng, self.port, kind, protocol, self._next())
                for kind in KINDS for protocol in PROTOCOLS]  # fmt: skip
        return jobs + self.control(2 * len(REAL_KEYS))


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def rejection_problem(job: Job, status: int, body: bytes) -> str | None:
    """None when `body` is a 401 in the client's protocol that does not echo the key, else why not."""
    if status != 401:
        return f"HTTP {status}"
    try:
        doc = json.loads(body)
    except ValueError:
        return "401, body not JSON"
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return "401, no error object with a message"
    if job.protocol == "anthropic" and (doc.get("type") != "error" or error.get("type") != "authentication_error"):
        return "401, not Anthropic's authentication_error shape"
    if job.protocol == "openai" and "type" in doc:
        return "401, not OpenAI's {error: {...}} shape"
    if job.presented and len(job.presented) >= 8 and job.presented.encode() in body:
        return "401 echoes the presented key"
    return None


def control_problem(job: Job, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}"
    try:
        oh.reply_text(job.protocol, False, body)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"200, not a {job.protocol} reply ({exc})"
    return None


@dataclass
class PhaseResult:
    name: str
    concurrency: int
    rejected_ms: list[float] = field(default_factory=list)
    control_ms: list[float] = field(default_factory=list)
    by_kind_ms: dict[str, list[float]] = field(default_factory=dict)
    by_protocol_ms: dict[str, list[float]] = field(default_factory=dict)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> outcome -> n
    wrong: Counter[str] = field(default_factory=Counter)  # "kind: problem" -> n
    control_failed: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    flood_sent: int = 0
    control_sent: int = 0
    reconnects: int = 0
    wall_s: float = 0.0
    gateway_cpu_s: float = 0.0
    mock_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def record(self, job: Job, status: int, body: bytes, total_ms: float | None, failure: str | None) -> None:
        if job.control:
            self.control_sent += 1
            problem = failure or control_problem(job, status, body)
        else:
            self.flood_sent += 1
            problem = failure or rejection_problem(job, status, body)
        self.outcomes.setdefault(job.kind, Counter())[problem or ("200" if job.control else "401")] += 1
        if problem is None and total_ms is not None:
            if job.control:
                self.control_ms.append(total_ms)
            else:
                self.rejected_ms.append(total_ms)
                self.by_kind_ms.setdefault(job.kind, []).append(total_ms)
                self.by_protocol_ms.setdefault(job.protocol, []).append(total_ms)
            return
        (self.control_failed if job.control else self.wrong)[f"{job.kind}: {problem}"] += 1
        if len(self.examples) < 20:
            self.examples.append({"kind": job.kind, "variant": job.variant, "protocol": job.protocol,
                                  "problem": problem, "body": oh.short(body, 300)})  # fmt: skip


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class Pool:
    """Keep-alive connections of the lean client, kept across phases; a connection the server
    closed is reopened before the next request, outside the timed span."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.conns: list[oh.Conn | None] = [None] * size

    async def run(self, jobs: list[Job], result: PhaseResult, width: int | None = None) -> None:
        queue = iter(jobs)  # shared by the workers; next() never yields, so no lock is needed
        await asyncio.gather(*(self._worker(i, queue, result) for i in range(width or len(self.conns))))

    async def _worker(self, i: int, queue: Iterator[Job], result: PhaseResult) -> None:
        for job in queue:
            conn = self.conns[i]
            if conn is None or conn.closed:
                if conn is not None:
                    conn.close()
                    result.reconnects += 1
                conn = self.conns[i] = await oh.connect(self.port, keep_body=True)
            try:
                status, _, total_ms, _, _ = await conn.request(job.payload)
            except (ConnectionError, TimeoutError) as exc:
                conn.close()
                result.record(job, 0, bytes(conn.body), None, f"no answer ({exc})")
                continue
            result.record(job, status, bytes(conn.body), total_ms, None)

    def close(self) -> None:
        for conn in self.conns:
            if conn is not None:
                conn.close()


async def run_phase(name: str, pool: Pool, jobs: list[Job], servers: dict[str, oh.Server],
                    width: int | None = None) -> PhaseResult:  # fmt: skip
    result = PhaseResult(name, width or len(pool.conns))
    gateway, mock = servers["gateway"], servers["mock"]
    log(f"phase {name}: {len(jobs)} requests at c={result.concurrency}")
    gw0, mock0, client0, t0 = gateway.cpu(), mock.cpu(), time.process_time(), time.perf_counter()
    await pool.run(jobs, result, width)
    result.wall_s = time.perf_counter() - t0
    result.client_cpu_s = time.process_time() - client0
    result.mock_cpu_s = mock.cpu() - mock0
    result.gateway_cpu_s = gateway.cpu() - gw0
    return result


# --------------------------------------------------------------------------------------------
# Gateway and mock readings
# --------------------------------------------------------------------------------------------


def storage_writes(pid: int) -> int | None:
    """Bytes the process caused to be written to storage (/proc/<pid>/io write_bytes)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        lines = Path(f"/proc/{pid}/io").read_text().splitlines()
        return int(next(line for line in lines if line.startswith("write_bytes:")).split()[1])
    return None


async def gateway_counts(port: int) -> dict[str, Any]:
    """Requests by status and upstream calls, from the gateway's /metrics."""
    out: dict[str, Any] = {"requests_by_status": Counter(), "upstream_calls": 0.0}
    with contextlib.suppress(OSError, ConnectionError, TimeoutError):
        status, body = await soak.http_get(port, "/metrics")
        if status != 200:
            return {}
        for line in body.decode(errors="replace").splitlines():
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                if name.startswith("junction_requests_total{"):
                    code = name.split('status="', 1)[1].split('"', 1)[0]
                    out["requests_by_status"][code] += float(value)
                elif name.startswith("junction_upstream_latency_seconds_count"):
                    out["upstream_calls"] += float(value)
        out["requests_by_status"] = {k: int(v) for k, v in sorted(out["requests_by_status"].items())}
        out["upstream_calls"] = int(out["upstream_calls"])
        return out
    return {}


async def recorded_flood_bodies(mock_port: int) -> tuple[int, int]:
    """(requests the mock still has on record, how many of them carry the flood marker)."""
    recorded = await soak.get_json(mock_port, "/_mock/requests")
    if not isinstance(recorded, list):
        return 0, -1
    return len(recorded), sum(FLOOD_MARKER in json.dumps(r.get("body")) for r in recorded)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


async def flood(settings: Settings, servers: dict[str, oh.Server], gw_port: int, mock_port: int,
                report: dict[str, Any]) -> None:  # fmt: skip
    _, rig_cpus, _ = oh.pinning(settings)  # type: ignore[arg-type]
    if rig_cpus:
        os.sched_setaffinity(0, {int(rig_cpus)})  # the client shares CPU 0 with the mock
    gateway = servers["gateway"]
    pid = gateway.proc.pid if gateway.proc else 0
    plan = Plan(settings, gw_port)
    probes = plan.probes()
    single = plan.flood(settings.single)
    # Warm-up at full width: opens every client connection and the gateway's upstream pool, and
    # lets first-use work (imports, caches) happen before anything is timed.
    warmup = plan.control(2 * settings.concurrency) + plan.flood(settings.concurrency + settings.warmup)
    baseline = plan.control(settings.baseline)
    main = plan.flood(settings.requests, settings.control_every)
    report["mock_before"] = await soak.get_json(mock_port, "/_mock/stats")
    report["rss_mb"] = {"start": gateway.rss_mb()}

    pool = Pool(gw_port, settings.concurrency)
    phases: list[PhaseResult] = []
    try:
        phases.append(await run_phase("probes", pool, probes, servers, width=1))
        if phases[0].control_failed:
            raise SystemExit(f"a valid key is not served, nothing to measure: {phases[0].examples}")
        phases.append(await run_phase("rejections c=1", pool, single, servers, width=1))
        phases.append(await run_phase("warm-up", pool, warmup, servers))
        phases.append(await run_phase(f"valid keys only c={settings.concurrency}", pool, baseline, servers))
        report["rss_mb"]["before_flood"] = gateway.rss_mb()
        writes0, log0 = storage_writes(pid), gateway.log_path.stat().st_size
        guard = oh.NoiseGuard(lambda: {os.getpid()} | {p for s in servers.values() for p in s.pids()})
        guard.start()
        phases.append(await run_phase(f"flood c={settings.concurrency}", pool, main, servers))
        report["noise"] = guard.finish()
        writes1, log1 = storage_writes(pid), gateway.log_path.stat().st_size
        report["rss_mb"]["after_flood"] = gateway.rss_mb()
        report["flood_io"] = {"storage_write_bytes": None if writes0 is None or writes1 is None else writes1 - writes0,
                              "log_bytes": log1 - log0}  # fmt: skip
    finally:
        pool.close()
    report["mock_after"] = await soak.get_json(mock_port, "/_mock/stats")
    report["mock_recorded"], report["mock_recorded_flood"] = await recorded_flood_bodies(mock_port)
    report["gateway_metrics"] = await gateway_counts(gw_port)
    report["valid_requests_sent"] = sum(p.control_sent for p in phases)
    report["phases"] = [summarize(p) for p in phases]


def summarize(p: PhaseResult) -> dict[str, Any]:
    rejected = len(p.rejected_ms)
    return {
        "name": p.name,
        "concurrency": p.concurrency,
        "flood_sent": p.flood_sent,
        "rejected_401": rejected,
        "control_sent": p.control_sent,
        "control_served": len(p.control_ms),
        "wall_s": round(p.wall_s, 3),
        "requests_per_s": round((p.flood_sent + p.control_sent) / p.wall_s, 1) if p.wall_s else None,
        "rejected_ms": oh.describe(p.rejected_ms),
        "control_ms": oh.describe(p.control_ms),
        "by_kind_ms": {k: oh.describe(v) for k, v in p.by_kind_ms.items()},
        "by_protocol_ms": {k: oh.describe(v) for k, v in p.by_protocol_ms.items()},
        "outcomes": {k: dict(v.most_common()) for k, v in p.outcomes.items()},
        "wrong": dict(p.wrong.most_common()),
        "control_failed": dict(p.control_failed.most_common()),
        "examples": p.examples,
        "reconnects": p.reconnects,
        "gateway_cpu_s": round(p.gateway_cpu_s, 3),
        "mock_cpu_s": round(p.mock_cpu_s, 3),
        "client_cpu_s": round(p.client_cpu_s, 3),
    }


# --------------------------------------------------------------------------------------------
# Analysis and report
# --------------------------------------------------------------------------------------------


def costs(report: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Gateway CPU per 1,000 rejections. The flood phase also served its control requests: their
    share is taken off at the cost per valid request of the valid-only phase."""
    by_name = {p["name"]: p for p in report["phases"]}
    main = by_name[f"flood c={settings.concurrency}"]
    base = by_name[f"valid keys only c={settings.concurrency}"]
    single = by_name["rejections c=1"]
    valid_cost = base["gateway_cpu_s"] / base["control_sent"] if base["control_sent"] else 0.0
    total = main["flood_sent"] + main["control_sent"]
    rejection_cpu = main["gateway_cpu_s"] - main["control_sent"] * valid_cost
    return {
        "gateway_cpu_s_per_1k_rejections": oh.per_1k(rejection_cpu, main["flood_sent"]),
        "gateway_cpu_s_per_1k_requests_raw": oh.per_1k(main["gateway_cpu_s"], total),
        "gateway_cpu_s_per_1k_valid": oh.per_1k(base["gateway_cpu_s"], base["control_sent"]),
        "gateway_cpu_s_per_1k_rejections_c1": oh.per_1k(single["gateway_cpu_s"], single["flood_sent"]),
        "gateway_cpu_pct": round(100 * main["gateway_cpu_s"] / main["wall_s"], 1) if main["wall_s"] else None,
        "client_cpu_s_per_1k": oh.per_1k(main["client_cpu_s"], total),
        "mock_cpu_s": main["mock_cpu_s"],
    }


def analyse(report: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: str, target: str, ok: bool, words: tuple[str, str] = ("PASS", "FAIL"),
              gates: bool = True) -> None:  # fmt: skip
        checks.append({"check": name, "value": value, "target": target, "result": words[0] if ok else words[1],
                       "ok": ok, "gates_exit": gates})  # fmt: skip

    phases = report["phases"]
    main = next(p for p in phases if p["name"] == f"flood c={settings.concurrency}")
    p99 = main["rejected_ms"].get("p99", float("nan"))
    check(f"rejection p99 at c={settings.concurrency}", f"{p99:.2f} ms (p50 {main['rejected_ms'].get('p50', 0):.2f}, "
          f"max {main['rejected_ms'].get('max', 0):.2f})", f"< {P99_TARGET_MS:g} ms", p99 < P99_TARGET_MS,
          ("met", "missed"), gates=False)  # fmt: skip

    sent = sum(p["flood_sent"] for p in phases)
    wrong: Counter[str] = Counter()
    for p in phases:
        wrong.update(p["wrong"])
    detail = "; ".join(f"{k} {v}" for k, v in wrong.most_common(5))
    counted = (report.get("gateway_metrics") or {}).get("requests_by_status", {}).get("401")
    value = f"{sent - sum(wrong.values()):,} of {sent:,}" + (f" ({detail})" if detail else "")
    if counted is not None:
        value += f"; the gateway's /metrics counted {counted:,} answers 401"
    check("wrong-key answers that are a 401 in the client's protocol, key not echoed", value, "all", not wrong)

    before, after = report.get("mock_before") or {}, report.get("mock_after") or {}
    metrics = report.get("gateway_metrics") or {}
    valid = report["valid_requests_sent"]
    if "received" in before and "received" in after:
        received = after["received"] - before["received"]
        leaked = received - valid
        value = (f"{max(0, leaked)} (mock received {received:,} requests for {valid:,} valid-key requests; "
                 f"{report['mock_recorded_flood']} flood bodies among the {report['mock_recorded']:,} it recorded; "
                 f"gateway counted {metrics.get('upstream_calls', '?'):,} upstream calls)")  # fmt: skip
        ok = leaked <= 0 and report["mock_recorded_flood"] == 0
    else:
        value, ok = "mock stats unavailable", False
    check("flood requests that reached the upstream", value, "0", ok)

    control_sent = sum(p["control_sent"] for p in phases)
    failed: Counter[str] = Counter()
    for p in phases:
        failed.update(p["control_failed"])
    ctrl = main["control_ms"]
    served = f"{control_sent - sum(failed.values()):,} of {control_sent:,}"
    if ctrl.get("n"):
        served += f"; during the flood p50 {ctrl['p50']:.2f} ms, p99 {ctrl['p99']:.2f} ms"
    if failed:
        served += " (" + "; ".join(f"{k} {v}" for k, v in failed.most_common(3)) + ")"
    check("valid-key requests served (control arm and probes)", served, "all", not failed)
    return checks


def ms(d: dict[str, Any], key: str) -> str:
    return f"{d[key]:.2f}" if d.get("n") else "–"


def per_request_us(per_1k_s: float | None) -> str:
    return f"{per_1k_s * 1000:.0f} µs" if per_1k_s is not None else "–"


def queueing_note(main: dict[str, Any], c: int, per_1k_s: float | None) -> str:
    """What the p99 target asks of a closed loop of `c` connections (Little's law)."""
    rps = main["requests_per_s"]
    if not rps:
        return "- queueing: not measured"
    needed = c / (P99_TARGET_MS / 1000)
    return (f"- queueing: a closed loop of {c} connections keeps {c} requests in the gateway, so the mean latency "
            f"is {c} / {rps:,.0f} req/s = {c / rps * 1000:.1f} ms; a p99 under {P99_TARGET_MS:g} ms needs more than "
            f"{needed:,.0f} answers/s from its one worker (at most {1e6 / needed:.0f} µs of CPU each; measured "
            f"{per_request_us(per_1k_s)} per rejection)")  # fmt: skip


def render(report: dict[str, Any], settings: Settings) -> str:
    env = report["environment"]
    machine = (f"{env['when']} · {env['cpu_model']} · {env['nproc']} CPUs · pinning: {env['pinning']} · "
               f"junction {env['versions'].get('junction-gateway')} ({env.get('commit')}"
               f"{' + uncommitted changes' if env.get('uncommitted') else ''})")  # fmt: skip
    c = settings.concurrency
    main = next(p for p in report["phases"] if p["name"] == f"flood c={c}")
    shape = (f"{main['flood_sent']:,} wrong keys at c={c} over {c} keep-alive connections, /v1/messages and "
             f"/v1/chat/completions alike, {len(KINDS)} kinds in equal shares; {main['control_sent']} valid-key "
             f"requests interleaved (1 in {settings.control_every})")  # fmt: skip
    lines = ["## Junction key-flood benchmark (S2)", "", machine, shape, "",
             "| traffic | requests | p50 | p99 | max | req/s |", "|---|---|---|---|---|---|"]  # fmt: skip

    def row(label: str, d: dict[str, Any], n: int, rps: Any) -> None:
        lines.append(f"| {label} | {n:,} | {ms(d, 'p50')} ms | {ms(d, 'p99')} ms | {ms(d, 'max')} ms | "
                     f"{rps if rps is not None else '–'} |")  # fmt: skip

    by_name = {p["name"]: p for p in report["phases"]}
    row(f"wrong keys, flood c={c} (401)", main["rejected_ms"], main["rejected_401"], main["requests_per_s"])
    row("valid keys during the flood (200)", main["control_ms"], main["control_served"], None)
    base = by_name[f"valid keys only c={c}"]
    row(f"valid keys only, c={c}, no flood (200)", base["control_ms"], base["control_served"], base["requests_per_s"])
    single = by_name["rejections c=1"]
    row("wrong keys, one connection (401)", single["rejected_ms"], single["rejected_401"], single["requests_per_s"])

    lines += ["", f"| kind (flood c={c}) | requests | p50 | p99 | max |", "|---|---|---|---|---|"]
    for kind in KINDS:
        d = main["by_kind_ms"].get(kind, {"n": 0})
        lines.append(f"| {kind} | {d['n']:,} | {ms(d, 'p50')} ms | {ms(d, 'p99')} ms | {ms(d, 'max')} ms |")
    for protocol in PROTOCOLS:
        d = main["by_protocol_ms"].get(protocol, {"n": 0})
        lines.append(f"| all kinds, {PATHS[protocol]} | {d['n']:,} | {ms(d, 'p50')} ms | {ms(d, 'p99')} ms | "
                     f"{ms(d, 'max')} ms |")  # fmt: skip

    cost, rss, io = report["costs"], report["rss_mb"], report.get("flood_io") or {}
    lines += ["", "| cost | measured |", "|---|---|",
              (f"| gateway CPU per 1,000 rejections | **{cost['gateway_cpu_s_per_1k_rejections']} s** "
               f"({per_request_us(cost['gateway_cpu_s_per_1k_rejections'])} per rejection; "
               f"flood phase as a whole: {cost['gateway_cpu_s_per_1k_requests_raw']} s per 1k requests; one "
               f"connection: {cost['gateway_cpu_s_per_1k_rejections_c1']} s) |"),
              f"| gateway CPU per 1,000 valid requests (for comparison) | {cost['gateway_cpu_s_per_1k_valid']} s |",
              f"| gateway CPU during the flood | {cost['gateway_cpu_pct']}% of one core |",
              (f"| gateway RSS | {rss.get('start')} MB at start, {rss.get('before_flood')} MB before the flood, "
               f"{rss.get('after_flood')} MB after |"),
              (f"| gateway storage writes / log bytes during the flood | {io.get('storage_write_bytes')} B / "
               f"{io.get('log_bytes')} B (the gateway has no database) |"),
              f"| client CPU per 1,000 requests | {cost['client_cpu_s_per_1k']} s |"]  # fmt: skip
    reconnects = sum(p["reconnects"] for p in report["phases"])
    lines.append(f"| connections the gateway closed (reopened outside the timed span) | {reconnects} |")

    lines += ["", "| check | measured | target | result |", "|---|---|---|---|"]
    for ch in report["checks"]:
        lines.append(f"| {ch['check']} | {ch['value']} | {ch['target']} | **{ch['result']}** |")
    for example in [e for p in report["phases"] for e in p["examples"]][:5]:
        lines.append(f"- wrong answer: {example['kind']} ({example['variant']}, {example['protocol']}): "
                     f"{example['problem']}: {example['body']}")  # fmt: skip
    lines.append(queueing_note(main, c, cost["gateway_cpu_s_per_1k_rejections"]))
    noise = report.get("noise")
    if noise:
        lines.append("- noise during the flood: " + oh.noise_summary(noise, "latencies and CPU not comparable"))
    gated = [ch for ch in report["checks"] if ch["gates_exit"]]
    verdict = "PASS" if all(ch["ok"] for ch in gated) else "FAIL"
    lines += ["", f"**Overall: {verdict}** (the p99 target is reported, not gated)"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def start(settings: Settings, workdir: Path, servers: dict[str, oh.Server], report: dict[str, Any]) -> tuple[int, int]:
    """Start the mock and the gateway; fills `servers` as it goes, so the caller can stop
    whatever started even if this fails."""
    proxy_cpus, rig_cpus, _ = oh.pinning(settings)  # type: ignore[arg-type]
    mock_port, gw_port = oh.free_port(), oh.free_port()
    config = workdir / "junction.yaml"
    config.write_text(gateway_config(mock_port, gw_port))
    report["config"] = config.read_text()
    mock_argv = [sys.executable, "-m", "gateway.mock_upstream", "--port", str(mock_port)]
    servers["mock"] = oh.Server("mock", mock_argv, mock_port, "/_mock/health", workdir / "mock.log")
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--host", HOST, "--port",
            str(gw_port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    servers["gateway"] = oh.Server("gateway", argv, gw_port, "/healthz", workdir / "junction.log")
    servers["mock"].start(dict(os.environ), rig_cpus)
    servers["gateway"].start(dict(os.environ, **{KEY_ENV_VAR: ENV_KEY}), proxy_cpus)
    for name, server in servers.items():
        why = server.wait_healthy(30)
        if why is not None:
            raise SystemExit(f"{name} did not start: {why}")
    return mock_port, gw_port


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="2,000 wrong keys and shorter side phases")
    p.add_argument("--requests", type=int, help="wrong-key requests in the flood (default 10,000; --quick 2,000)")
    p.add_argument("--concurrency", type=int, default=64, help="connections in flight (default 64)")
    p.add_argument("--control-every", type=int, default=50,
                   help="one valid-key request per this many wrong-key ones (default 50; 0: none)")  # fmt: skip
    p.add_argument("--warmup", type=int, help="wrong-key requests of the warm-up, discarded (500; --quick 200)")
    p.add_argument("--single", type=int, help="wrong-key requests over one connection (1,000; --quick 300)")
    p.add_argument("--baseline", type=int, help="valid-key requests with no flood (1,000; --quick 300)")
    p.add_argument("--seed", type=int, default=1, help="seed of the key mix")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default %(default)s)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    _, _, pin_text = oh.pinning(settings)  # type: ignore[arg-type]
    env = oh.environment(settings, pin_text)  # type: ignore[arg-type]
    for key in ("litellm", "skipped", "servers_skipped", "knobs"):
        env.pop(key, None)
    env["settings"].pop("knobs", None)
    env["uncommitted"] = soak.uncommitted()
    report: dict[str, Any] = {"environment": env, "settings": asdict(settings)}
    signal.signal(signal.SIGTERM, soak.interrupt)
    servers: dict[str, oh.Server] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="junction-key-flood-") as tmp, soak.stopping(servers):
            mock_port, gw_port = start(settings, Path(tmp), servers, report)
            soak.event_loop_runner()(flood(settings, servers, gw_port, mock_port, report))
            report["gateway_log_tail"] = servers["gateway"].log_tail(20)
    except KeyboardInterrupt:
        log("interrupted: the servers were stopped")
        return 130
    env["loadavg_end"] = oh.loadavg()
    report["costs"] = costs(report, settings)
    report["checks"] = analyse(report, settings)
    print(render(report, settings))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {args.out}")
    return 0 if all(ch["ok"] for ch in report["checks"] if ch["gates_exit"]) else 1


if __name__ == "__main__":
    sys.exit(main())
