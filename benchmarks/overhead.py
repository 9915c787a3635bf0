#!/usr/bin/env python3
"""Added latency and CPU cost of the Junction gateway, side by side with the mock and LiteLLM.

Arms (each one a separate server process on 127.0.0.1):
  direct        client -> mock upstream (the baseline every added number is measured against)
  junction      client -> `junction serve` -> mock
  litellm       client -> LiteLLM proxy (separate venv `.venv-bench`) -> mock      [optional]
Translation phase (Anthropic client):
  direct-anthropic     client -> mock /v1/messages
  junction-relay       Anthropic client -> gateway -> Anthropic-style mock (same protocol)
  junction-translated  Anthropic client -> gateway -> OpenAI-style mock (cross protocol; skipped
                       with the gateway's own reason while it answers 501)
  junction-responses   Responses client -> gateway -> OpenAI-style mock (Responses <-> Chat translation)
  direct-responses     Responses client -> mock /v1/responses
Shared-state phase (a key with requests-per-minute, in-flight and token limits, so every request is admitted
and settled):
  junction-memory      the limits in the gateway's memory (state: {backend: memory})
  junction-redis       the limits in a local redis-server (state: {backend: redis}); skipped with the reason
                       when redis-server is not installed
  junction-responses-native  Responses client -> gateway -> mock serving Responses (relayed, not translated)

Method (see shared/docs/gateway-anchors.md 1.8-1.10 and (b)):
  * one lean keep-alive HTTP/1.1 client (asyncio + httptools) for every arm, so the client's
    own cost is small and the same everywhere; its CPU per request is reported to prove it;
  * warm-up discarded; arms interleaved in rounds with a rotating order, so machine noise hits
    every arm alike; added p50 = median over rounds of (arm p50 - direct p50) of the same round;
  * CPU-seconds per 1k requests from /proc/<pid>/stat deltas taken around each arm's own
    blocks (LiteLLM: its whole process tree), the most noise-resistant number here;
  * gateway and LiteLLM pinned to CPU 1, mock and client to CPU 0 (`--no-pin` to disable);
  * /proc/loadavg and the busiest foreign processes recorded per phase (noise guard).

Run it with the gateway's venv:
  .venv/bin/python benchmarks/overhead.py --quick           # about a minute
  .venv/bin/python benchmarks/overhead.py                   # a few minutes
  .venv/bin/python benchmarks/overhead.py --setup-litellm   # first create .venv-bench
Tables go to stdout, progress to stderr, everything to benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import httptools  # C parser shipped with uvicorn[standard]: keeps the client's cost tiny
except ImportError:  # pragma: no cover - the gateway's venv always has it
    sys.exit("benchmarks/overhead.py needs httptools: run it with the gateway's venv (.venv/bin/python)")

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".venv-bench"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "overhead.json"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KNOWN_BAD = ROOT / "requirements" / "known-bad.txt"  # releases published compromised on PyPI
GATEWAY_KEY = "jk-bench-not-a-secret"
LIMITED_KEY = "jk-bench-limited-not-a-secret"  # a key with limits high enough never to refuse
LITELLM_KEY = "sk-bench-not-a-secret"
REQUEST_TIMEOUT_S = 30.0
# The prompt is the ~150-byte chat request of the methodology; the reply size comes from knobs.
PROMPT = "Reply with a short sentence about latency. This is a benchmark request; any answer will do."
SELF_HEADERS = {b"x-junction-upstream-ms": "junction x-junction-upstream-ms",
                b"x-litellm-overhead-duration-ms": "litellm x-litellm-overhead-duration-ms"}  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    rounds: int  # interleaved rounds per phase
    block: int  # requests per arm per round at c=1
    block_seconds: float  # seconds per arm per round at c>1 (closed loop, so time-bounded)
    warmup_requests: int  # per arm per phase, discarded
    warmup_seconds: float
    concurrency: tuple[int, ...]
    words: int  # mock reply size in words
    chunks: int  # mock stream chunks (gap 0: the per-chunk cost is not hidden behind a pace)
    pin: bool
    litellm: bool
    translation: bool

    @property
    def knobs(self) -> dict[str, str]:
        # Zero delays: a base delay would only add noise to a sub-millisecond delta (1.8).
        return stream_knobs(self.words, self.chunks)


def settings_from(args: argparse.Namespace) -> Settings:
    def pick(given: Any, quick: Any, full: Any) -> Any:
        return given if given is not None else (quick if args.quick else full)

    return Settings(
        rounds=pick(args.rounds, 4, 10),
        block=pick(args.block, 40, 100),
        block_seconds=pick(args.block_seconds, 1.0, 2.0),
        warmup_requests=pick(args.warmup_requests, 40, 200),
        warmup_seconds=pick(args.warmup_seconds, 1.0, 3.0),
        concurrency=tuple(args.concurrency),
        words=args.words,
        chunks=args.chunks,
        pin=not args.no_pin,
        litellm=not args.no_litellm,
        translation=not args.no_translation,
    )


# --------------------------------------------------------------------------------------------
# Lean HTTP/1.1 client
# --------------------------------------------------------------------------------------------


class Conn(asyncio.Protocol):
    """One keep-alive connection, one request at a time, timestamps taken in the parser callbacks.

    Why not aiohttp: its per-request cost (tens of µs) is larger than some of the deltas we
    measure, while this is a write() plus a C parser. Every arm uses this same class.
    """

    def __init__(self, keep_body: bool) -> None:
        self.keep_body = keep_body
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.done: asyncio.Future[None] | None = None
        self.status = 0
        self.t_first = 0.0
        self.t_end = 0.0
        self.self_ms: float | None = None
        self.body = bytearray()
        self.events = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("connection closed by the server"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in SELF_HEADERS:
            with contextlib.suppress(ValueError):
                self.self_ms = float(value)

    def on_body(self, body: bytes) -> None:
        if not self.t_first:
            self.t_first = time.perf_counter()
        # SSE frame count, for the record only: the same cost for every arm, but a separator split
        # across two reads is missed.
        self.events += body.count(b"\n\n")
        if self.keep_body:
            self.body += body

    def on_message_complete(self) -> None:
        self.t_end = time.perf_counter()
        self.status = self.parser.get_status_code()
        if not self.parser.should_keep_alive():
            self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)

    async def request(self, payload: bytes) -> tuple[int, float, float, float | None, int]:
        """Send one request; returns (status, first body byte ms, total ms, self-reported ms, frames)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.t_first = 0.0
        self.self_ms = None
        self.events = 0
        if self.keep_body:
            self.body = bytearray()
        # call_later rather than asyncio.wait_for: no extra task or future per request.
        timer = loop.call_later(REQUEST_TIMEOUT_S, self._fail, TimeoutError("request timed out"))
        t0 = time.perf_counter()
        self.transport.write(payload)
        try:
            await self.done
        finally:
            timer.cancel()
        first = (self.t_first or self.t_end) - t0
        return self.status, first * 1000, (self.t_end - t0) * 1000, self.self_ms, self.events

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, keep_body: bool = False) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Conn(keep_body), HOST, port)
    return conn


# --------------------------------------------------------------------------------------------
# Arms: who is called, with what bytes
# --------------------------------------------------------------------------------------------


@dataclass
class Arm:
    name: str
    server: str  # key into the running servers: "mock", "junction" or "litellm"
    protocol: str  # the client's wire protocol: "openai" or "anthropic"
    model: str
    headers: tuple[tuple[str, str], ...]
    baseline: str | None  # the direct arm this one's added latency is measured against
    port: int = 0
    skipped: dict[bool, str] = field(default_factory=dict)  # stream? -> why this arm cannot run

    def runs(self, stream: bool) -> bool:
        return stream not in self.skipped

    @property
    def path(self) -> str:
        return {"anthropic": "/v1/messages", "responses": "/v1/responses"}.get(self.protocol, "/v1/chat/completions")

    def payload(self, stream: bool) -> bytes:
        if self.protocol == "responses":
            body: dict[str, Any] = {"model": self.model, "max_output_tokens": 16, "stream": stream, "input": PROMPT,
                                    "store": False}  # fmt: skip
        else:
            # This minimal body is valid in both protocols (max_tokens is required by Anthropic).
            body = {"model": self.model, "max_tokens": 16, "stream": stream,
                    "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
        raw = json.dumps(body, separators=(",", ":")).encode()
        head = [f"POST {self.path} HTTP/1.1", f"Host: {HOST}:{self.port}", "Content-Type: application/json",
                f"Content-Length: {len(raw)}"]  # fmt: skip
        head += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + raw


def auth_headers(protocol: str, key: str) -> tuple[tuple[str, str], ...]:
    if protocol == "anthropic":
        return (("x-api-key", key), ("anthropic-version", "2023-06-01"))
    return (("Authorization", f"Bearer {key}"),)


def knob_headers(knobs: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((f"x-mock-{name}", value) for name, value in knobs.items())


def build_arms(settings: Settings) -> dict[str, Arm]:
    """Every arm, keyed by name. Direct arms carry the knobs as request headers; the proxies get
    the same knobs from their provider config, because they do not forward client headers."""
    knobs = knob_headers(settings.knobs)
    arms = [
        Arm("direct", "mock", "openai", "bench-openai", auth_headers("openai", "not-a-real-key") + knobs, None),
        Arm("junction", "junction", "openai", "bench-alias", auth_headers("openai", GATEWAY_KEY), "direct"),
        Arm("litellm", "litellm", "openai", "bench-alias", auth_headers("openai", LITELLM_KEY), "direct"),
        Arm("direct-anthropic", "mock", "anthropic", "bench-anthropic",
            auth_headers("anthropic", "not-a-real-key") + knobs, None),
        Arm("junction-relay", "junction", "anthropic", "bench-anthropic",
            auth_headers("anthropic", GATEWAY_KEY), "direct-anthropic"),
        # The upstream of the translated arm is the OpenAI-style mock, so that is its baseline.
        Arm("junction-translated", "junction", "anthropic", "bench-alias",
            auth_headers("anthropic", GATEWAY_KEY), "direct"),
        # A Responses client (Codex, the OpenAI SDK's responses.*) in front of the same Chat mock.
        Arm("junction-responses", "junction", "responses", "bench-alias",
            auth_headers("openai", GATEWAY_KEY), "direct"),
        # The same client to an upstream that serves Responses itself: the gateway relays the stream.
        Arm("direct-responses", "mock", "responses", "bench-responses",
            auth_headers("openai", "not-a-real-key") + knobs, None),
        Arm("junction-responses-native", "junction", "responses", "bench-responses",
            auth_headers("openai", GATEWAY_KEY), "direct-responses"),
        # Per-key limits admitted and settled on every request: in memory, and in Redis.
        Arm("junction-memory", "junction", "openai", "bench-alias", auth_headers("openai", LIMITED_KEY), "direct"),
        Arm("junction-redis", "junction-redis", "openai", "bench-alias", auth_headers("openai", LIMITED_KEY), "direct"),
    ]  # fmt: skip
    return {arm.name: arm for arm in arms}


@dataclass(frozen=True)
class Phase:
    name: str
    stream: bool
    concurrency: int
    arms: tuple[str, ...]


def build_phases(settings: Settings) -> list[Phase]:
    main_arms = ("direct", "junction", "litellm")
    phases = [
        Phase(f"{'stream' if stream else 'non-stream'} c={c}", stream, c, main_arms)
        for c in settings.concurrency
        for stream in (False, True)
    ]
    if settings.translation:
        # Same-protocol relay and cross-protocol translation side by side, with both baselines.
        phases.append(Phase("translation stream c=1", True, 1,
                            ("direct", "direct-anthropic", "direct-responses", "junction-relay",
                             "junction-translated", "junction-responses", "junction-responses-native")))  # fmt: skip
    for stream in (False, True):
        phases.append(Phase(f"shared state {'stream' if stream else 'non-stream'} c=1", stream, 1,
                            ("direct", "junction-memory", "junction-redis")))  # fmt: skip
    return phases


# --------------------------------------------------------------------------------------------
# Response checks (probe only: run once per arm, never on the timed path)
# --------------------------------------------------------------------------------------------


def reply_text(protocol: str, stream: bool, body: bytes) -> str:
    """The assistant text in a response, or raise ValueError if the shape is not `protocol`'s."""
    if protocol == "responses":
        return responses_text(stream, body)
    if not stream:
        doc = json.loads(body)
        if protocol == "anthropic":
            if doc.get("type") != "message":
                raise ValueError(f"not an Anthropic message: {body[:120]!r}")
            return "".join(block.get("text", "") for block in doc["content"])
        return doc["choices"][0]["message"]["content"] or ""
    parts: list[str] = []
    for line in body.split(b"\n"):
        if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
            continue
        event = json.loads(line[5:])
        if protocol == "anthropic":
            if event.get("object", "").startswith("chat.completion"):
                raise ValueError("OpenAI chunks passed through to an Anthropic client (not translated)")
            delta = event.get("delta", {}) if event.get("type") == "content_block_delta" else {}
            parts.append(delta.get("text", ""))
        else:
            for choice in event.get("choices", []):
                parts.append((choice.get("delta") or {}).get("content") or "")
    if protocol == "anthropic" and b"message_stop" not in body:
        raise ValueError("Anthropic stream without message_stop")
    if protocol == "openai" and b"[DONE]" not in body:
        raise ValueError("OpenAI stream without [DONE]")
    return "".join(parts)


def responses_text(stream: bool, body: bytes) -> str:
    """The output text of a Responses answer; ValueError unless it is a well-formed Responses body or stream."""
    if not stream:
        doc = json.loads(body)
        if doc.get("object") != "response":
            raise ValueError(f"not a Responses object: {body[:120]!r}")
        return "".join(part.get("text", "") for item in doc["output"] if item.get("type") == "message"
                       for part in item["content"])  # fmt: skip
    events = [json.loads(line[5:]) for line in body.split(b"\n") if line.startswith(b"data:")]
    if not events or events[0].get("type") != "response.created" or events[-1].get("type") != "response.completed":
        raise ValueError("Responses stream without response.created first and response.completed last")
    return "".join(e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta")


async def probe(arm: Arm, stream: bool) -> tuple[str | None, str]:
    """One untimed request: (reason to skip the arm or None, the reply text)."""
    try:
        conn = await connect(arm.port, keep_body=True)
    except OSError as exc:
        return f"cannot connect to {arm.server} on port {arm.port}: {exc}", ""
    try:
        status, _, _, _, _ = await conn.request(arm.payload(stream))
    except (ConnectionError, TimeoutError) as exc:
        return f"probe request failed: {exc}", ""
    finally:
        conn.close()
    body = bytes(conn.body)
    if status == 501 and arm.name == "junction-translated":
        return f"gateway answered 501 for cross-protocol (translation not built yet): {short(body)}", ""
    if status != 200:
        return f"probe answered HTTP {status}: {short(body)}", ""
    try:
        return None, reply_text(arm.protocol, stream, body)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"unexpected response shape: {exc}", ""


def short(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Processes: start, health, CPU accounting, cleanup
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is field 3, `state`)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (LiteLLM may fork workers)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime+stime of these processes, plus what their reaped children used."""
    ticks = 0
    for pid in pids:
        fields = proc_stat(pid)
        if fields is not None:
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLK_TCK


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    health_path: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str], cpus: str | None) -> None:
        argv = (["taskset", "-c", cpus] if cpus else []) + self.argv
        with open(self.log_path, "wb") as out:
            # A file, never a pipe: an unread pipe fills up and stalls the server mid-benchmark.
            # A new session keeps the terminal's Ctrl-C away; we stop it ourselves in order.
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=ROOT, start_new_session=True)  # fmt: skip

    def cpu(self) -> float:
        return cpu_seconds(process_tree(self.proc.pid)) if self.proc else 0.0

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def rss_mb(self) -> float:
        """Resident memory of the whole tree, in MiB."""
        kib = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, StopIteration):
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                kib += int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
        return round(kib / 1024, 1)

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_healthy(self, timeout_s: float) -> str | None:
        """None when healthy, else why not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}"
            with contextlib.suppress(OSError, http.client.HTTPException):
                if not self.health_path:  # not HTTP (redis-server): accepting connections is enough
                    socket.create_connection((HOST, self.port), timeout=2).close()
                    return None
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", self.health_path)
                if conn.getresponse().status == 200:
                    return None
            time.sleep(0.25)
        return f"{self.name} not healthy after {timeout_s:.0f}s:\n{self.log_tail()}"

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        # The group of the process we started (its own session), so LiteLLM's workers go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def pinning(settings: Settings) -> tuple[str | None, str | None, str]:
    """(cpus for the proxies, cpus for the mock and client, description)."""
    if not settings.pin:
        return None, None, "off (--no-pin)"
    if shutil.which("taskset") is None:
        return None, None, "off (taskset not found)"
    if (os.cpu_count() or 1) < 2:
        return None, None, "off (fewer than 2 CPUs)"
    return "1", "0", "proxies on CPU 1; mock and client on CPU 0"


def mock_argv(port: int) -> list[str]:
    junction = Path(sys.executable).with_name("junction")
    if junction.exists():
        return [str(junction), "mock-upstream", "--port", str(port)]
    return [sys.executable, "-m", "gateway.mock_upstream", "--port", str(port)]


def yaml_knob_headers(knobs: dict[str, str]) -> str:
    """The knobs as the body of a YAML `headers:` mapping, entries indented 8 spaces (both configs)."""
    return "".join(f'\n        {name}: "{value}"' for name, value in knob_headers(knobs))


def gateway_config(mock_port: int, gw_port: int, knobs: dict[str, str], redis_port: int | None = None) -> str:
    headers = yaml_knob_headers(knobs)
    state = f"state: {{ backend: redis, url: 'redis://{HOST}:{redis_port}/0' }}\n" if redis_port else ""
    return state + f"""version: v0.4.0
llm_providers:
  - model: mock/bench-openai
    base_url: http://{HOST}:{mock_port}/v1
    access_key: not-a-real-key
    default: true
    headers:{headers}
  - model: mock/bench-anthropic
    base_url: http://{HOST}:{mock_port}
    provider_interface: anthropic
    access_key: not-a-real-key
    headers:{headers}
  - model: mock/bench-responses
    base_url: http://{HOST}:{mock_port}/v1
    provider_interface: responses
    access_key: not-a-real-key
    headers:{headers}
model_aliases:
  bench-alias: {{ target: mock/bench-openai }}
gateway_keys:
  - name: bench
    key: $JUNCTION_BENCH_KEY
  - name: limited
    key: $JUNCTION_BENCH_LIMITED_KEY
    rpm: 1000000000
    tpm: 1000000000000
    max_parallel: 1000000
listeners:
  - {{ type: model, name: bench, address: {HOST}, port: {gw_port} }}
"""


def litellm_config(mock_port: int, knobs: dict[str, str]) -> str:
    # The settings peers are told to use for a fair LiteLLM run: one worker, no DB, no retries,
    # no callbacks, master key set (shared/docs/gateway-anchors.md, (b)3).
    headers = yaml_knob_headers(knobs)
    return f"""model_list:
  - model_name: bench-alias
    litellm_params:
      model: openai/bench-openai
      api_base: http://{HOST}:{mock_port}/v1
      api_key: not-a-real-key
      extra_headers:{headers}
litellm_settings:
  num_retries: 0
  callbacks: []
  request_timeout: 30
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def litellm_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "REDIS_HOST"):
        env.pop(name, None)
    env.update(
        LITELLM_MASTER_KEY=LITELLM_KEY,
        # Keep every byte on 127.0.0.1: no cost-map download, no telemetry, no hub look-ups.
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        DISABLE_ADMIN_UI="True",
    )
    return env


# --------------------------------------------------------------------------------------------
# LiteLLM's separate venv
# --------------------------------------------------------------------------------------------


def bad_litellm_versions() -> set[str]:
    """LiteLLM releases on the project's known-bad list: never installed, whatever pyproject says."""
    versions = set()
    for line in KNOWN_BAD.read_text().splitlines():
        name, sep, version = line.partition("#")[0].strip().partition("==")
        if sep and name.strip().lower() == "litellm":
            versions.add(version.strip())
    return versions


def bench_requirements() -> list[str]:
    """The `bench` extra of pyproject.toml: the single place the LiteLLM pin lives."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        reqs = tomllib.load(f)["project"]["optional-dependencies"]["bench"]
    for req in reqs:
        if req.replace(" ", "").startswith("litellm") and any(f"=={bad}" in req for bad in bad_litellm_versions()):
            raise SystemExit(f"refusing to install {req}: that release was compromised")
    return reqs


def setup_litellm() -> None:
    """Create .venv-bench with the pinned LiteLLM. Separate from .venv on purpose: LiteLLM's
    ~120 pinned dependencies must never move the gateway's own."""
    reqs = bench_requirements()
    if litellm_unavailable() is None:
        log(f"{BENCH_VENV.name} already has the pinned litellm")
        return
    log(f"setting up {BENCH_VENV} with {' '.join(reqs)} (a few minutes)...")
    if not (BENCH_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "--quiet", *reqs], check=True)


def litellm_version() -> str | None:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return out.stdout.strip() or None


def litellm_unavailable() -> str | None:
    """Why the LiteLLM arm cannot run, or None."""
    if not (BENCH_VENV / "bin" / "litellm").exists():
        return f"{BENCH_VENV.name}/bin/litellm not found (run with --setup-litellm to create it)"
    version = litellm_version()
    pinned = next((r.split("==", 1)[1] for r in bench_requirements() if "litellm" in r and "==" in r), None)
    if version in bad_litellm_versions():
        return f"litellm {version} in {BENCH_VENV.name} is a compromised release; remove that venv"
    if pinned and version != pinned:
        return f"litellm {version} in {BENCH_VENV.name}, but {pinned} is pinned (rerun with --setup-litellm)"
    return None


# --------------------------------------------------------------------------------------------
# Noise guard
# --------------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def all_cpu_ticks() -> dict[int, tuple[int, str]]:
    ticks: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/stat", "rb") as f:
                    data = f.read()
                name = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
                fields = data[data.rindex(b")") + 2 :].split()
                ticks[pid] = (int(fields[11]) + int(fields[12]), name)
    return ticks


@dataclass
class NoiseGuard:
    """Load average and the busiest processes that are not part of the benchmark."""

    ours: Callable[[], set[int]]
    started: float = 0.0
    before: dict[int, tuple[int, str]] = field(default_factory=dict)
    load_before: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.load_before = loadavg()
        self.before = all_cpu_ticks()
        self.started = time.perf_counter()

    def finish(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        after = all_cpu_ticks()
        ours = self.ours()
        busy: list[tuple[float, str, int]] = []
        for pid, (ticks, name) in after.items():
            used = ticks - self.before.get(pid, (0, name))[0]
            if pid not in ours and used > 0:
                busy.append((round(100 * used / CLK_TCK / wall, 1), name, pid))
        busy.sort(reverse=True)
        foreign = [{"pid": pid, "name": name, "cpu_pct": pct} for pct, name, pid in busy[:5]]
        return {"loadavg_before": self.load_before, "loadavg_after": loadavg(), "seconds": round(wall, 1),
                "top_foreign": foreign, "noisy": any(pct > 10 for pct, _, _ in busy)}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Running a phase
# --------------------------------------------------------------------------------------------


@dataclass
class Budget:
    """Shared by the workers of one block: stop at `requests` or at `deadline`, whichever first."""

    requests: int
    deadline: float

    def take(self) -> bool:
        if self.requests <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.requests -= 1
        return True


@dataclass
class ArmRun:
    """Everything measured for one arm in one phase."""

    total_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    self_ms: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    proxy_cpu_s: float = 0.0
    mock_cpu_s: float = 0.0
    client_cpu_s: float = 0.0


class Pool:
    """`concurrency` keep-alive connections to one arm, kept across rounds."""

    def __init__(self, arm: Arm, concurrency: int, stream: bool) -> None:
        self.arm = arm
        self.payload = arm.payload(stream)
        self.conns: list[Conn | None] = [None] * concurrency

    async def _conn(self, i: int) -> Conn:
        conn = self.conns[i]
        if conn is None or conn.closed:
            if conn is not None:
                conn.close()
            conn = self.conns[i] = await connect(self.arm.port)
        return conn

    async def prime(self) -> None:
        """One untimed request per connection: reopens connections the server closed while the
        other arms ran (keep-alive timeouts), so no reconnect lands in a timed request."""
        await asyncio.gather(*(self._prime_one(i) for i in range(len(self.conns))))

    async def _prime_one(self, i: int) -> None:
        with contextlib.suppress(OSError, ConnectionError, TimeoutError):
            await (await self._conn(i)).request(self.payload)

    async def run(self, budget: Budget, run: ArmRun | None, round_no: int) -> None:
        await asyncio.gather(*(self._worker(i, budget, run, round_no) for i in range(len(self.conns))))

    async def _worker(self, i: int, budget: Budget, run: ArmRun | None, round_no: int) -> None:
        while budget.take():
            try:
                conn = await self._conn(i)
            except OSError:
                # A rig failure (ports, fds), counted apart from the server's own errors.
                count(run, "connect")
                await asyncio.sleep(0.05)
                continue
            try:
                status, first, total, self_ms, frames = await conn.request(self.payload)
            except (ConnectionError, TimeoutError) as exc:
                conn.close()
                count(run, "timeout" if isinstance(exc, TimeoutError) else "disconnect")
                continue
            if run is None:
                continue
            if status != 200:
                count(run, f"http_{status}")
                continue
            run.total_ms.append(total)
            run.first_ms.append(first)
            run.frames.append(frames)
            run.rounds.append(round_no)
            if self_ms is not None:
                run.self_ms.append(self_ms)

    def close(self) -> None:
        for conn in self.conns:
            if conn is not None:
                conn.close()


def count(run: ArmRun | None, kind: str) -> None:
    if run is not None:
        run.errors[kind] = run.errors.get(kind, 0) + 1


def block_budget(settings: Settings, concurrency: int, warmup: bool) -> Budget:
    """Made right before the block runs: the deadline starts now."""
    now = time.perf_counter()
    if warmup:
        return Budget(settings.warmup_requests * concurrency, now + settings.warmup_seconds)
    if concurrency == 1:
        # Count-bounded so each arm gets the same sample size; the time cap only guards a stall.
        return Budget(settings.block, now + max(30.0, settings.block * 0.5))
    # Closed loop at c>1: time-bounded, so the slow arm does not stretch the round.
    return Budget(10**9, now + settings.block_seconds)


async def run_phase(phase: Phase, arms: dict[str, Arm], servers: dict[str, Server],
                    settings: Settings, guard: NoiseGuard) -> dict[str, Any]:  # fmt: skip
    names = [n for n in phase.arms if arms[n].runs(phase.stream)]
    pools = {n: Pool(arms[n], phase.concurrency, phase.stream) for n in names}
    runs = {n: ArmRun() for n in names}
    mock = servers["mock"]
    guard.start()
    try:
        for name in names:  # warm-up, discarded
            await pools[name].run(block_budget(settings, phase.concurrency, warmup=True), None, -1)
        for round_no in range(settings.rounds):
            # Rotate the order too, so no arm always follows the heaviest one.
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                budget = functools.partial(block_budget, settings, phase.concurrency, warmup=False)
                await timed_block(pools[name], runs[name], servers.get(arms[name].server), mock, budget, round_no)
    finally:
        for pool in pools.values():
            pool.close()
    noise = guard.finish()
    return {"phase": phase, "runs": runs, "noise": noise}


async def timed_block(pool: Pool, run: ArmRun, proxy: Server | None, mock: Server,
                      make_budget: Callable[[], Budget], round_no: int) -> None:  # fmt: skip
    await pool.prime()
    if proxy is mock:
        proxy = None  # a direct arm: the mock's CPU is reported in its own column
    # Snapshots around this arm's own block only, so idle background work of the other
    # servers is never charged to the arm.
    proxy0 = proxy.cpu() if proxy else 0.0
    mock0, client0, t0 = mock.cpu(), time.process_time(), time.perf_counter()
    await pool.run(make_budget(), run, round_no)
    run.wall_s += time.perf_counter() - t0
    run.client_cpu_s += time.process_time() - client0
    run.mock_cpu_s += mock.cpu() - mock0
    if proxy:
        run.proxy_cpu_s += proxy.cpu() - proxy0


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on pre-sorted data."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def describe(values: Sequence[float]) -> dict[str, float]:
    data = sorted(values)
    if not data:
        return {"n": 0}
    out = {"n": len(data), "mean": statistics.fmean(data), "min": data[0], "max": data[-1]}
    for q in (50, 90, 99, 99.9):
        out[f"p{q:g}"] = percentile(data, q)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def round_p50s(run: ArmRun, values: list[float]) -> dict[int, float]:
    by_round: dict[int, list[float]] = {}
    for r, v in zip(run.rounds, values):
        by_round.setdefault(r, []).append(v)
    return {r: statistics.median(vs) for r, vs in by_round.items()}


def added(run: ArmRun, base: ArmRun, metric: str) -> dict[str, Any]:
    """Added latency against the baseline arm: p50 as the median of same-round differences (with
    their IQR), p99 from the pooled samples."""
    mine, theirs = getattr(run, metric), getattr(base, metric)
    ours_r, base_r = round_p50s(run, mine), round_p50s(base, theirs)
    deltas = sorted(ours_r[r] - base_r[r] for r in ours_r if r in base_r)
    if not deltas:
        return {}
    return {
        "p50": round(statistics.median(deltas), 4),
        "p50_iqr": [round(percentile(deltas, 25), 4), round(percentile(deltas, 75), 4)],
        "p99": round(percentile(sorted(mine), 99) - percentile(sorted(theirs), 99), 4),
        "rounds": len(deltas),
    }


def per_1k(seconds: float, n: int) -> float | None:
    return round(seconds / n * 1000, 3) if n else None


def summarize(result: dict[str, Any], arms: dict[str, Arm], settings: Settings) -> dict[str, Any]:
    phase: Phase = result["phase"]
    runs: dict[str, ArmRun] = result["runs"]
    out: dict[str, Any] = {"name": phase.name, "stream": phase.stream, "concurrency": phase.concurrency,
                           "chunks": settings.chunks, "noise": result["noise"], "arms": {}}  # fmt: skip
    for name in phase.arms:
        arm = arms[name]
        if name not in runs:
            out["arms"][name] = {"skipped": arm.skipped.get(phase.stream, "not run")}
            continue
        run = runs[name]
        n = len(run.total_ms)
        body_ms = [t - f for t, f in zip(run.total_ms, run.first_ms)]
        entry: dict[str, Any] = {
            "n": n,
            "errors": run.errors,
            "total_ms": describe(run.total_ms),
            "rps": round(n / run.wall_s, 1) if run.wall_s else None,
            "proxy_cpu_s_per_1k": per_1k(run.proxy_cpu_s, n) if arm.server != "mock" else None,
            "mock_cpu_s_per_1k": per_1k(run.mock_cpu_s, n),
            "client_cpu_s_per_1k": per_1k(run.client_cpu_s, n),
            "round_p50_ms": [round(v, 4) for _, v in sorted(round_p50s(run, run.total_ms).items())],
        }
        if phase.stream:
            entry["first_event_ms"] = describe(run.first_ms)
            entry["stream_body_ms"] = describe(body_ms)
            entry["frames_p50"] = statistics.median(run.frames) if run.frames else None
        if run.self_ms:
            entry["self_reported_ms"] = describe(run.self_ms)
        base = runs.get(arm.baseline or "")
        if base is not None and base.total_ms:
            entry["added_total_ms"] = added(run, base, "total_ms")
            if phase.stream:
                entry["added_first_event_ms"] = added(run, base, "first_ms")
                base_body = statistics.median([t - f for t, f in zip(base.total_ms, base.first_ms)])
                per_chunk_ms = (statistics.median(body_ms) - base_body) / settings.chunks
                entry["added_per_chunk_us"] = round(per_chunk_ms * 1000, 2)
        out["arms"][name] = entry
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_added(entry: dict[str, Any], key: str) -> tuple[str, str]:
    add = entry.get(key)
    if not add:
        return "—", "—"
    lo, hi = add["p50_iqr"]
    return f"{add['p50']:+.2f} [{lo:+.2f}, {hi:+.2f}]", f"{add['p99']:+.2f}"


def phase_table(summary: dict[str, Any]) -> list[str]:
    stream = summary["stream"]
    head = ["arm", "n"]
    if stream:
        head += ["TTFE p50", "TTFE p99", "added TTFE p50 [IQR]"]
    head += ["p50", "p99", "added p50 [IQR]", "added p99"]
    if stream:
        head += ["added µs/chunk"]
    head += ["RPS", "proxy CPU s/1k", "mock CPU s/1k", "client CPU s/1k", "errors"]
    lines = [f"### {summary['name']} (ms; added = arm − its direct baseline, same rounds)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for name, e in summary["arms"].items():
        if "skipped" in e:
            lines.append(f"| {name} | skipped: {e['skipped']} |")
            continue
        row = [name, str(e["n"])]
        if stream:
            fe = e["first_event_ms"]
            row += [fmt(fe.get("p50")), fmt(fe.get("p99")), fmt_added(e, "added_first_event_ms")[0]]
        row += [fmt(e["total_ms"].get("p50")), fmt(e["total_ms"].get("p99")), *fmt_added(e, "added_total_ms")]
        if stream:
            row.append(fmt(e.get("added_per_chunk_us"), 1))
        errors = ", ".join(f"{k}={v}" for k, v in e["errors"].items()) or "0"
        row += [fmt(e["rps"], 0), fmt(e["proxy_cpu_s_per_1k"], 3), fmt(e["mock_cpu_s_per_1k"], 3),
                fmt(e["client_cpu_s_per_1k"], 3), errors]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "noise: " + noise_summary(summary["noise"])]
    return lines


def noise_summary(noise: dict[str, Any], when_noisy: str = "") -> str:
    """The noise guard's record in one line: load average and the busiest foreign processes."""
    top = ", ".join(f"{p['name']} {p['cpu_pct']}%" for p in noise["top_foreign"][:3]) or "none"
    flag = f" — NOISY{f' ({when_noisy})' if when_noisy else ''}" if noise["noisy"] else ""
    return f"loadavg {noise['loadavg_before'][0]} -> {noise['loadavg_after'][0]}; busiest foreign processes: {top}{flag}"


def stream_knobs(words: int, chunks: int, gap_ms: float = 0) -> dict[str, str]:
    """Mock knobs for a reply of `words` words in `chunks` chunks `gap_ms` apart, answered at once."""
    return {"words": str(words), "chunks": str(chunks), "gap_ms": f"{gap_ms:g}", "ttft_ms": "0", "delay_ms": "0"}


def verdicts(summaries: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, the self-reported numbers (never the headline) and rig warnings."""
    lines: list[str] = []
    c1 = next((s for s in summaries if s["name"] == "non-stream c=1"), None)
    if c1:
        jx = c1["arms"].get("junction", {}).get("added_total_ms", {}).get("p50")
        lx = c1["arms"].get("litellm", {}).get("added_total_ms", {}).get("p50")
        if jx is not None:
            lines.append(f"- target added p50 at c=1 <= 1.5 ms: junction {jx:+.2f} ms -> "
                         f"{'PASS' if jx <= 1.5 else 'FAIL'}")  # fmt: skip
        if jx is not None and lx:
            ratio = jx / lx
            lines.append(f"- target <= 1/10 of LiteLLM's added p50: {jx:.2f} / {lx:.2f} ms = {ratio:.3f} -> "
                         f"{'PASS' if ratio <= 0.1 else 'FAIL'}")  # fmt: skip
    lines += translation_cost(summaries)
    for s in summaries:
        if not s["name"].startswith("shared state"):
            continue
        memory = s["arms"].get("junction-memory", {}).get("added_total_ms", {}).get("p50")
        shared = s["arms"].get("junction-redis", {}).get("added_total_ms", {}).get("p50")
        if memory is None or shared is None:
            lines.append(f"- {s['name']}: redis vs memory not measured (see skipped)")
            continue
        lines.append(f"- target redis within 0.5 ms of memory at c=1 ({s['name']}): {shared:+.2f} vs {memory:+.2f} ms "
                     f"added p50 = {shared - memory:+.2f} ms -> {'PASS' if shared - memory <= 0.5 else 'FAIL'}")  # fmt: skip
    for s in summaries:
        for name, e in s["arms"].items():
            if "self_reported_ms" not in e:
                continue
            label = "x-junction-upstream-ms (upstream time seen by the gateway)" if name.startswith("junction") \
                else "x-litellm-overhead-duration-ms"  # fmt: skip
            lines.append(f"- self-reported, {s['name']}, {name}: {label} p50 {e['self_reported_ms']['p50']:.2f} ms "
                         f"(client-side p50 {e['total_ms']['p50']:.2f} ms)")  # fmt: skip
        direct = s["arms"].get("direct", {})
        for name, e in s["arms"].items():
            if name != "direct" and direct.get("rps") and e.get("rps") and s["concurrency"] > 1 \
                    and e["rps"] >= 0.9 * direct["rps"]:  # fmt: skip
                lines.append(f"- {s['name']}: {name} is within 10% of the mock's ceiling: mock-bound, not a "
                             "gateway number")  # fmt: skip
    return lines


def translation_cost(summaries: list[dict[str, Any]]) -> list[str]:
    """Cross-protocol translation against same-protocol relay, both through the same gateway."""
    phase = next((s for s in summaries if s["name"].startswith("translation")), None)
    if phase is None:
        return []
    relay = phase["arms"].get("junction-relay", {})
    lines = []
    for name, label in (("junction-translated", "Anthropic -> Chat translation"),
                        ("junction-responses", "Responses -> Chat translation"),
                        ("junction-responses-native", "Responses relayed natively")):  # fmt: skip
        translated = phase["arms"].get(name, {})
        if "added_first_event_ms" not in relay or "added_first_event_ms" not in translated:
            lines.append(f"- {label} vs relay: not measured (see skipped)")
            continue
        ttfe = translated["added_first_event_ms"]["p50"] - relay["added_first_event_ms"]["p50"]
        per_chunk = translated["added_per_chunk_us"] - relay["added_per_chunk_us"]
        line = (f"- {label} vs same-protocol relay: added TTFE p50 {ttfe:+.2f} ms, "
                f"added time per chunk {per_chunk:+.1f} µs")  # fmt: skip
        if translated.get("proxy_cpu_s_per_1k") is not None and relay.get("proxy_cpu_s_per_1k") is not None:
            # s per 1k requests == ms per request; spread over the chunks of one stream, in µs.
            cpu = (translated["proxy_cpu_s_per_1k"] - relay["proxy_cpu_s_per_1k"]) / phase["chunks"] * 1000
            line += f", gateway CPU {cpu:+.1f} µs per chunk"
        lines.append(line)
    return lines


def report(summaries: list[dict[str, Any]], env: dict[str, Any]) -> str:
    run = env["settings"]
    machine = f"{env['when']} · {env['cpu_model']} · {env['nproc']} CPUs · pinning: {env['pinning']}"
    versions = f"junction {env['versions'].get('junction-gateway')} · litellm {env['litellm'] or 'not run'}"
    shape = (f"mock knobs: {env['knobs']} · rounds {run['rounds']}, c=1 block {run['block']} requests, "
             f"c>1 block {run['block_seconds']} s")  # fmt: skip
    lines = ["## Junction overhead benchmark", "", f"{machine} · {versions}", shape, ""]
    for summary in summaries:
        lines += phase_table(summary) + [""]
    for why in env["skipped"]:
        lines.append(f"- skipped: {why}")
    lines += verdicts(summaries)
    return "\n".join(lines)


def environment(settings: Settings, pin_text: str) -> dict[str, Any]:
    versions = {}
    for dist in ("junction-gateway", "starlette", "uvicorn", "httpx", "httpx-aiohttp", "aiohttp", "httptools",
                 "uvloop", "orjson", "sniffio"):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False)  # fmt: skip
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit.stdout.strip() or None,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "pinning": pin_text,
        "client": "asyncio + httptools keep-alive, " + ("uvloop" if uvloop_available() else "asyncio loop"),
        "versions": versions,
        "litellm": None,
        "knobs": settings.knobs,
        "settings": settings.__dict__ | {"knobs": settings.knobs},
        "skipped": [],
        "servers_skipped": {},
        "loadavg_start": loadavg(),
    }


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def start_servers(settings: Settings, workdir: Path, env_info: dict[str, Any], servers: dict[str, Server]) -> None:
    """Fills `servers` as it goes, so the caller can stop whatever started even if this fails."""
    proxy_cpus, rig_cpus, _ = pinning(settings)
    mock_port, gw_port = free_port(), free_port()
    (workdir / "junction.yaml").write_text(gateway_config(mock_port, gw_port, settings.knobs))
    junction = Path(sys.executable).with_name("junction")
    servers["mock"] = Server("mock", mock_argv(mock_port), mock_port, "/_mock/health", workdir / "mock.log")
    servers["junction"] = Server("junction", [str(junction), "serve", "--config", str(workdir / "junction.yaml"),
                                              "--host", HOST, "--port", str(gw_port), "--log-level", "warning"],
                                 gw_port, "/healthz", workdir / "junction.log")  # fmt: skip
    env_info["configs"] = {"junction": (workdir / "junction.yaml").read_text()}
    redis = shutil.which("redis-server") or shutil.which("valkey-server")
    if redis is None:
        skip_server(env_info, "junction-redis", "redis-server is not installed (make servers installs it)")
    else:
        redis_port, gw2_port = free_port(), free_port()
        (workdir / "junction-redis.yaml").write_text(gateway_config(mock_port, gw2_port, settings.knobs, redis_port))
        env_info["configs"]["junction-redis"] = (workdir / "junction-redis.yaml").read_text()
        servers["redis"] = Server("redis", [redis, "--port", str(redis_port), "--bind", HOST, "--save", "",
                                            "--appendonly", "no", "--dir", str(workdir)],
                                  redis_port, "", workdir / "redis.log")  # fmt: skip
        servers["junction-redis"] = Server("junction-redis", [str(junction), "serve", "--config",
                                                              str(workdir / "junction-redis.yaml"), "--host", HOST,
                                                              "--port", str(gw2_port), "--log-level", "warning"],
                                           gw2_port, "/healthz", workdir / "junction-redis.log")  # fmt: skip
    why = litellm_unavailable() if settings.litellm else "--no-litellm given"
    if why:
        skip_server(env_info, "litellm", why)
    else:
        lport = free_port()
        (workdir / "litellm.yaml").write_text(litellm_config(mock_port, settings.knobs))
        env_info["configs"]["litellm"] = (workdir / "litellm.yaml").read_text()
        argv = [str(BENCH_VENV / "bin" / "litellm"), "--config", str(workdir / "litellm.yaml"), "--host", HOST,
                "--port", str(lport), "--num_workers", "1", "--telemetry", "False"]  # fmt: skip
        servers["litellm"] = Server("litellm", argv, lport, "/health/liveliness", workdir / "litellm.log")
    gw_env = dict(os.environ, JUNCTION_BENCH_KEY=GATEWAY_KEY, JUNCTION_BENCH_LIMITED_KEY=LIMITED_KEY)
    # Start everything first, then wait: LiteLLM's ~15 s start overlaps the others'.
    servers["mock"].start(dict(os.environ), rig_cpus)
    servers["junction"].start(gw_env, proxy_cpus)
    if "redis" in servers:  # beside the mock: the store is part of the rig, the gateway is measured
        servers["redis"].start(dict(os.environ), rig_cpus)
        servers["junction-redis"].start(gw_env, proxy_cpus)
    if "litellm" in servers:
        servers["litellm"].start(litellm_env(), proxy_cpus)


def wait_servers(servers: dict[str, Server], env_info: dict[str, Any]) -> None:
    for name in list(servers):
        log(f"waiting for {name} on port {servers[name].port}...")
        why = servers[name].wait_healthy(120 if name == "litellm" else 30)
        if why is None:
            continue
        if name == "mock":
            raise SystemExit(f"the mock upstream did not start: {why}")
        skip_server(env_info, name, why)
        servers.pop(name).stop()


def skip_server(env_info: dict[str, Any], name: str, why: str) -> None:
    """Record and print why a server (and so its arms) is left out; the others still run."""
    log(f"skipping {name}: {why}")
    env_info["servers_skipped"][name] = why.splitlines()[0]
    env_info["skipped"].append(f"{name}: {why.splitlines()[0]}")


async def probe_arms(arms: dict[str, Arm], phases: list[Phase], servers: dict[str, Server],
                     env_info: dict[str, Any]) -> None:  # fmt: skip
    """Mark arms that cannot run, with the reason, and check that every arm gets the same reply."""
    wanted = {(name, p.stream) for p in phases for name in p.arms}
    texts: dict[tuple[str, bool], str] = {}
    for name, stream in sorted(wanted):
        arm = arms[name]
        if arm.server not in servers:
            arm.skipped[stream] = env_info["servers_skipped"].get(arm.server, f"{arm.server} is not running")
            continue
        arm.port = servers[arm.server].port
        why, texts[(name, stream)] = await probe(arm, stream)
        if why:
            arm.skipped[stream] = why
            mode = "stream" if stream else "non-stream"
            env_info["skipped"].append(f"{name} ({mode}): {why}")
            log(f"skipping arm {name} ({mode}): {why}")
    # Knob fidelity: a proxy that dropped the knob headers would be timed on a different reply.
    for (name, stream), text in texts.items():
        base = texts.get((arms[name].baseline or name, stream))
        if text and base and len(text.split()) != len(base.split()):
            note = (f"{name} ({'stream' if stream else 'non-stream'}) replied {len(text.split())} words, its "
                    f"baseline {len(base.split())}: knobs not applied the same way")  # fmt: skip
            env_info.setdefault("warnings", []).append(note)
            log(f"warning: {note}")


def mock_stats(servers: dict[str, Server]) -> Any:
    with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
        conn = http.client.HTTPConnection(HOST, servers["mock"].port, timeout=5)
        conn.request("GET", "/_mock/stats")
        return json.loads(conn.getresponse().read())
    return None


async def run_all(settings: Settings, servers: dict[str, Server], env_info: dict[str, Any]) -> list[dict[str, Any]]:
    _, rig_cpus, _ = pinning(settings)
    if rig_cpus:
        os.sched_setaffinity(0, {int(rig_cpus)})  # the client shares CPU 0 with the mock
    arms = build_arms(settings)
    phases = build_phases(settings)
    await probe_arms(arms, phases, servers, env_info)

    def ours() -> set[int]:
        return {os.getpid()} | {pid for s in servers.values() for pid in s.pids()}

    guard = NoiseGuard(ours)
    summaries = []
    for phase in phases:
        log(f"phase {phase.name}: arms {', '.join(a for a in phase.arms if arms[a].runs(phase.stream))}")
        result = await run_phase(phase, arms, servers, settings, guard)
        summaries.append(summarize(result, arms, settings))
    return summaries


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="short run (about a minute)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per phase (quick 4, full 10)")
    p.add_argument("--block", type=int, help="requests per arm per round at c=1 (quick 40, full 100)")
    p.add_argument("--block-seconds", type=float, help="seconds per arm per round at c>1 (quick 1, full 2)")
    p.add_argument("--warmup-requests", type=int, help="discarded requests per connection per arm and phase")
    p.add_argument("--warmup-seconds", type=float, help="cap on each arm's warm-up")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="client concurrencies (default 1 32)")
    p.add_argument("--words", type=int, default=16, help="mock reply length in words")
    p.add_argument("--chunks", type=int, default=16, help="mock stream chunks")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM arm")
    p.add_argument("--no-translation", action="store_true", help="skip the Anthropic relay/translation phase")
    p.add_argument("--setup-litellm", action="store_true",
                   help=f"create/update {BENCH_VENV.name} with the pinned LiteLLM from the bench extra first")  # fmt: skip
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default %(default)s)")
    return p.parse_args(argv)


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM takes the same path as Ctrl-C, so the servers are always stopped.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    if args.setup_litellm:
        setup_litellm()
    _, _, pin_text = pinning(settings)
    env_info = environment(settings, pin_text)
    signal.signal(signal.SIGTERM, _interrupt)
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="junction-bench-") as tmp:
        try:
            start_servers(settings, Path(tmp), env_info, servers)
            wait_servers(servers, env_info)
            if "litellm" in servers:
                env_info["litellm"] = litellm_version()
            runner = asyncio.run
            if uvloop_available():
                import uvloop

                runner = uvloop.run  # type: ignore[assignment]
            summaries = runner(run_all(settings, servers, env_info))
            env_info["mock_stats"] = mock_stats(servers)
            env_info["rss_mb_after_run"] = {name: server.rss_mb() for name, server in servers.items()}
        except KeyboardInterrupt:
            log("interrupted: stopping the servers")
            return 130
        finally:
            for server in servers.values():
                server.stop()
    env_info["loadavg_end"] = loadavg()
    print(report(summaries, env_info))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": env_info, "phases": summaries}, indent=2, default=str))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
