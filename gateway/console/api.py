"""What the console's JSON API answers, built from the gateway's own state (pure functions, no I/O)."""

from __future__ import annotations

import os
import time
from typing import Any, Iterable

import numpy as np

from gateway.config import Config
from gateway.ledger import DAILY_SUMS, failed
from gateway.ledger.sql import COLUMN
from gateway.redact import Redactor

LIVE_WINDOW_S = 60.0


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    found = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(found[0]), 2), "p95": round(float(found[1]), 2), "p99": round(float(found[2]), 2)}


def live(entries: Iterable[dict[str, Any]], now: float | None = None, window_s: float = LIVE_WINDOW_S) -> dict[str, Any]:
    """Rates, errors, latency and time-to-first-token percentiles and tokens per model over the last
    `window_s` seconds of this process's requests."""
    now = time.time() if now is None else now
    recent = [e for e in entries if e["ts"] >= now - window_s]
    per_model: dict[str, dict[str, int]] = {}
    for e in recent:
        sums = per_model.setdefault(e["model"] or "(none)", {"requests": 0, "input_tokens": 0, "output_tokens": 0})
        sums["requests"] += 1
        sums["input_tokens"] += e["input_tokens"]
        sums["output_tokens"] += e["output_tokens"]
    errors = sum(1 for e in recent if failed(e["status"]))
    return {
        "window_s": window_s,
        "requests": len(recent),
        "rps": round(len(recent) / window_s, 3),
        "errors": errors,
        "error_rate": round(errors / len(recent), 4) if recent else 0.0,
        "latency_ms": _percentiles([e["latency_ms"] for e in recent]),
        "ttft_ms": _percentiles([e["ttft_ms"] for e in recent if e.get("ttft_ms") is not None]),
        "models": per_model,
        "pid": os.getpid(),  # with several workers, each answers for its own requests
    }


def models(config: Config, cooling: dict[str, float], failures: dict[str, int] | None = None,
           entries: Iterable[dict[str, Any]] = (), in_flight: dict[str, int] | None = None,
           latency_ms: dict[str, float] | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Every provider model with its interface, URL, key state, health (cooldown, failures in a row,
    requests in flight, requests and errors over the last 5 minutes, time-to-first-byte average) and aliases."""
    since = (time.time() if now is None else now) - 300
    served: dict[str, list[int]] = {}
    for e in entries:
        if e["ts"] >= since and e["model"]:
            counts = served.setdefault(e["model"], [0, 0])
            counts[0] += 1
            counts[1] += int(failed(e["status"]))
    aliases: dict[str, list[str]] = {}
    for alias, target in config.aliases.items():
        aliases.setdefault(target.model, []).append(alias)
    out = []
    for p in config.providers:
        out.append({
            "model": p.model, "name": p.name, "interface": p.api.value,
            "url": p.url, "default": p.default, "key": "missing" if p.missing_env else ("set" if p.access_key else "none"),
            "missing_env": list(p.missing_env), "cooling_s": round(cooling.get(p.model, 0.0), 1),
            "aliases": sorted(aliases.get(p.model, [])), "priced": p.pricing is not None,
            "failures_in_a_row": (failures or {}).get(p.model, 0), "in_flight": (in_flight or {}).get(p.model, 0),
            "upstream_ms": round((latency_ms or {})[p.model], 1) if p.model in (latency_ms or {}) else None,
            "requests_5m": served.get(p.model, [0, 0])[0], "errors_5m": served.get(p.model, [0, 0])[1],
        })  # fmt: skip
    return out


def config_text(config: Config, text: str) -> str:
    """The config file as loaded, with every secret it names masked."""
    return Redactor(config.secrets()).text(text)


def usage_from_memory(entries: Iterable[dict[str, Any]], by: tuple[str, ...]) -> list[dict[str, Any]]:
    """`junction usage`-shaped rows from this process's recent requests (when the ledger is off)."""
    sums: dict[tuple[Any, ...], dict[str, Any]] = {}
    for e in entries:
        group = tuple(e[COLUMN[d]] for d in by)
        row = sums.setdefault(group, {**dict(zip(by, group)), **dict.fromkeys(DAILY_SUMS, 0)})
        row["requests"] += 1
        row["errors"] += int(failed(e["status"]))
        for name in DAILY_SUMS[2:]:  # the token counts and the cost, as the events hold them
            row[name] += e[name]
    return [sums[k] for k in sorted(sums)]


def routes_yaml(routes: list[dict[str, Any]]) -> str:
    """Edited routes as a `routing_preferences:` block to paste into the config."""
    import yaml

    block = [{k: v for k, v in r.items() if v not in (None, [], "")} for r in routes]
    return yaml.safe_dump({"routing_preferences": block}, sort_keys=False, allow_unicode=True)
