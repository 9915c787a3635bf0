"""Observability: Prometheus metrics and the structured access log, both fed from the `Call`.

Metric names follow the OpenTelemetry GenAI conventions where one exists (`gen_ai_*`); the
gateway's own are prefixed `junction_`. Labels carry model and route names only, never keys or
prompt text. The access log is one JSON object per request, without prompt text.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.call import Call

access_log = logging.getLogger("junction.access")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# Event-loop lag: a timer of LAG_INTERVAL seconds is set again and again and how late it fires is
# the lag (5 wake-ups a second: negligible cost). The gauge shows the largest of the last
# LAG_SAMPLES, i.e. the worst stall of the last 10 s, so a 10-15 s scrape interval misses none.
LAG_INTERVAL = 0.2
LAG_SAMPLES = 50


# Set by `junction serve --workers N` (gateway/workers.py) before prometheus-client is imported: the workers'
# values then live in files there, and any worker's /metrics reports them all.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """One registry per app, so tests and several apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("junction_requests", "Requests by route, model and status",
                                ("protocol", "endpoint", "route", "model", "status"), registry=r)  # fmt: skip
        self.duration = Histogram("gen_ai_server_request_duration_seconds", "Time to the last byte",
                                  ("model",), buckets=_LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.ttft = Histogram("gen_ai_server_time_to_first_token_seconds", "Time to the first streamed byte",
                              ("model",), buckets=_LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.upstream = Histogram("junction_upstream_latency_seconds", "Upstream request sent -> headers",
                                  ("model",), buckets=_LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.tokens = Counter("gen_ai_client_token_usage", "Tokens reported by upstreams",
                              ("model", "type"), registry=r)  # fmt: skip
        # multiprocess_mode: how gauges of several workers add up (only read with `serve --workers N`).
        self.in_flight = Gauge("junction_requests_in_flight", "Requests being served", registry=r,
                               multiprocess_mode="livesum")  # fmt: skip
        self.streams = Gauge("junction_streams_in_flight", "Streams being relayed", registry=r,
                             multiprocess_mode="livesum")  # fmt: skip
        self.fallbacks = Counter("junction_fallbacks", "Requests moved to a fallback model", ("model",), registry=r)
        self.cooldowns = Counter("junction_cooldowns", "Times a model was put in cooldown", ("model",), registry=r)
        self.route_decisions = Counter("junction_router_decisions", "Routing decisions by route and reason",
                                       ("route", "reason"), registry=r)  # fmt: skip
        self.route_latency = Histogram("junction_router_decision_seconds", "Time to decide a route",
                                       buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2, 10),
                                       registry=r)  # fmt: skip
        # Failed upstream attempts by kind (timeout, connect, tls, http_503, stream_idle_timeout,
        # auth_refused_401: the alert signal for a provider refusing the gateway's key, ...).
        self.upstream_errors = Counter("junction_upstream_errors", "Failed upstream attempts by model and error type",
                                       ("model", "error_type"), registry=r)  # fmt: skip
        self.spend = Counter("junction_key_spend_usd", "Spend per gateway key, priced by the models' pricing",
                             ("key",), registry=r)  # fmt: skip
        # Decisions taken per process because the shared key state (Redis) was unreachable.
        self.state_degraded = Counter("junction_state_degraded", "Key-limit operations decided per process "
                                      "because the shared state store was unreachable", ("operation",), registry=r)  # fmt: skip
        self.ledger_events = Counter("junction_ledger_events", "Usage-ledger events by outcome: written to the "
                                     "database, journaled to disk while it was down, dropped (disk refused too)",
                                     ("outcome",), registry=r)  # fmt: skip
        self.disconnects = Counter("junction_client_disconnects", "Requests the client abandoned",
                                   ("model",), registry=r)  # fmt: skip
        self.loop_lag = Gauge("junction_event_loop_lag_seconds",
                              f"Largest event-loop lag over the last {LAG_INTERVAL * LAG_SAMPLES:g} s "
                              f"(how late a {LAG_INTERVAL:g} s timer fired)", registry=r,
                              multiprocess_mode="max")  # fmt: skip
        self._lag_task: asyncio.Task[None] | None = None
        self._lag_users = 0

    def watch_loop(self) -> None:
        """Start the lag monitor on the running loop (once). Metrics outlive config reloads, so
        each app that starts takes a reference and `unwatch_loop` stops the monitor with the last."""
        self._lag_users += 1
        task = self._lag_task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._lag_task = asyncio.create_task(self._measure_lag(), name="junction-loop-lag")

    def unwatch_loop(self) -> None:
        self._lag_users = max(0, self._lag_users - 1)
        if self._lag_users == 0 and self._lag_task is not None:
            self._lag_task.cancel()
            self._lag_task = None

    async def _measure_lag(self) -> None:
        recent: deque[float] = deque(maxlen=LAG_SAMPLES)
        while True:
            # perf_counter, not loop.time(): uvloop's clock is cached per loop iteration and would
            # not see a callback that blocks within the iteration that wakes us.
            started = time.perf_counter()
            await asyncio.sleep(LAG_INTERVAL)
            recent.append(max(0.0, time.perf_counter() - started - LAG_INTERVAL))
            self.loop_lag.set(max(recent))

    def record(self, call: Call) -> None:
        model = call.provider.model if call.provider else "none"
        self.requests.labels(call.wire, call.endpoint, call.route or "none", model,
                             str(call.status)).inc()  # fmt: skip
        self.duration.labels(model).observe(call.elapsed_ms() / 1000)
        if call.ttft_ms is not None:
            self.ttft.labels(model).observe(call.ttft_ms / 1000)
        if call.upstream_ms is not None:
            self.upstream.labels(model).observe(call.upstream_ms / 1000)
        if call.input_tokens:
            self.tokens.labels(model, "input").inc(call.input_tokens)
        if call.output_tokens:
            self.tokens.labels(model, "output").inc(call.output_tokens)
        if call.client_gone:
            self.disconnects.labels(model).inc()

    def route(self, decision: Any) -> None:
        self.route_decisions.labels(decision.route or "none", decision.reason).inc()
        self.route_latency.observe(decision.latency_ms / 1000)

    def exposition(self) -> tuple[bytes, str]:
        if MULTIPROCESS_DIR in os.environ:  # `serve --workers N`: every worker's values, added up
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


NO_LOG_HEADER = "x-junction-no-log"


def prompt_text(call: Call, max_chars: int) -> str | None:
    """The request's system prompt and latest messages as JSON, cut at `max_chars`; None when the
    client asked for this request not to be logged."""
    if call.body is None or call.headers.get(NO_LOG_HEADER, "").strip().lower() in ("1", "true", "yes"):
        return None
    messages = call.body.get("messages")
    # Only the tail: enough for the latest turns, and bounded work however long the conversation.
    tail = messages[-8:] if isinstance(messages, list) else messages
    text = orjson.dumps({"system": call.body.get("system"), "messages": tail}, default=str).decode()
    return text if len(text) <= max_chars else text[:max_chars] + "…"


def log_access(call: Call, prompt_chars: int = 0) -> None:
    """One JSON line per LLM request; the prompt only when `prompt_chars` (access_log.prompts)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    record: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "request_id": call.request_id,
        "key": call.key.name if call.key else None,
        "protocol": call.wire,
        "endpoint": call.endpoint,
        "requested_model": call.requested_model,
        "model": call.provider.model if call.provider else None,
        "alias": call.alias,
        "route": call.route,
        "status": call.status,
        "attempts": call.attempts,
        "fallback_from": call.fallback_from,
        "stream": call.stream,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "upstream_ms": round(call.upstream_ms, 2) if call.upstream_ms is not None else None,
        "ttft_ms": round(call.ttft_ms, 2) if call.ttft_ms is not None else None,
        "duration_ms": round(call.elapsed_ms(), 2),
        "client_gone": call.client_gone,
    }
    if call.error_type is not None:
        record["error_type"] = call.error_type
    if call.usage_estimated:
        record["usage_estimated"] = True  # output_tokens from the text streamed before the cut
    if prompt_chars:
        record["prompt"] = prompt_text(call, prompt_chars)
        if record["prompt"] is None:
            record["prompt_withheld"] = "x-junction-no-log"
    access_log.info(orjson.dumps(record).decode())
