"""Mixed client traffic for the usage-ledger tests, and what each client saw: the route and model
headers, the status and the usage the answer reported. The ledger must agree with the clients."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

KINDS = ("openai", "openai-stream", "anthropic", "anthropic-stream", "abort", "invalid")


@dataclass(frozen=True)
class Seen:
    request_id: str
    key: str
    route: str  # "" for none
    model: str  # "" when no model served
    status: int
    completed: bool  # the whole answer, with its usage, reached the client
    input_tokens: int = 0  # cached part included
    output_tokens: int = 0
    cache_read_tokens: int = 0


def _anthropic_input(usage: dict[str, Any]) -> tuple[int, int]:
    read = usage.get("cache_read_input_tokens") or 0
    return usage["input_tokens"] + read + (usage.get("cache_creation_input_tokens") or 0), read


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    out = []
    for line in response.iter_lines():
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            out.append(json.loads(line[5:]))
    return out


def send(client: httpx.Client, base: str, kind: str, name: str, key: str, text: str, model: str = "any") -> Seen:
    """One request of `kind` (see KINDS) with the gateway key named `name`; the client's view of it."""
    anthropic = kind.startswith("anthropic") or kind == "abort"
    stream = kind.endswith("stream") or kind == "abort"
    path = "/v1/messages" if anthropic else "/v1/chat/completions"
    body: dict[str, Any] = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        if not anthropic:
            body["stream_options"] = {"include_usage": True}
    if kind == "invalid":
        body["messages"] = "not a list"
    headers = {"authorization": f"Bearer {key}", "x-api-key": key}
    with client.stream("POST", f"{base}{path}", json=body, headers=headers) as response:
        route = response.headers.get("x-junction-route", "none")
        seen = dict(request_id=response.headers["x-junction-request-id"], key=name, route="" if route == "none" else route, model=response.headers.get("x-junction-model", ""),
                    status=response.status_code)  # fmt: skip
        if response.status_code != 200:
            response.read()
            return Seen(**seen, completed=False)
        if kind == "abort":
            next(response.iter_raw())  # the first bytes, then the client goes away
            return Seen(**seen, completed=False)
        if not stream:
            usage = json.loads(response.read())["usage"]
            if anthropic:
                total_in, read = _anthropic_input(usage)
                return Seen(**seen, completed=True, input_tokens=total_in, output_tokens=usage["output_tokens"],
                            cache_read_tokens=read)  # fmt: skip
            read = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            return Seen(**seen, completed=True, input_tokens=usage["prompt_tokens"],
                        output_tokens=usage["completion_tokens"], cache_read_tokens=read)  # fmt: skip
        events = _events(response)
        if anthropic:
            # message_start's usage, updated by the final figures message_delta carries
            usage = dict(next(e["message"]["usage"] for e in events if e["type"] == "message_start"))
            usage.update([e["usage"] for e in events if e["type"] == "message_delta"][-1])
            total_in, read = _anthropic_input(usage)
            return Seen(**seen, completed=True, input_tokens=total_in, output_tokens=usage["output_tokens"],
                        cache_read_tokens=read)  # fmt: skip
        usage = [e["usage"] for e in events if e.get("usage")][-1]
        return Seen(**seen, completed=True, input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"],
                    cache_read_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)  # fmt: skip


TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens")


def requests_by_combination(seen: list[Seen]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(requests, errors) per (key, model, route), as the clients saw them."""
    out: Counter[tuple[str, str, str, bool]] = Counter((s.key, s.model, s.route, s.status >= 400) for s in seen)
    return {(k, m, r): (out[(k, m, r, False)] + out[(k, m, r, True)], out[(k, m, r, True)])
            for k, m, r, _ in out}  # fmt: skip


def tokens_by_combination(seen: list[Seen]) -> dict[tuple[str, str, str], tuple[int, ...]]:
    """Summed usage per (key, model, route) of the answers that reached their clients whole."""
    out: dict[tuple[str, str, str], Counter[str]] = {}
    for s in seen:
        if s.completed:
            out.setdefault((s.key, s.model, s.route), Counter()).update({t: getattr(s, t) for t in TOKENS})
    return {combo: tuple(sums[t] for t in TOKENS) for combo, sums in out.items()}
