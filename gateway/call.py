"""`Call`: the per-request state carried through the middleware chain in `scope["state"]`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayKey, Provider
from models.providers import ApiStyle
from models.usage import Usage

STATE_KEY = "junction.call"


@dataclass(slots=True)
class Call:
    request_id: str
    protocol: ApiStyle  # the client's wire protocol (OPENAI for Responses clients: errors take OpenAI's shape)
    endpoint: str  # "chat", "count_tokens" or "models"
    headers: dict[str, str]  # client request headers, lower-cased names
    started: float = field(default_factory=time.perf_counter)
    key: GatewayKey | None = None  # the gateway key the client presented
    credential: str | None = field(default=None, repr=False)  # only kept for passthrough_auth
    body: dict[str, Any] | None = None
    body_size: int = 0
    query: str = ""  # the client's query string (Claude Code sends ?beta=true)
    stream: bool = False
    requested_model: str | None = None
    alias: str | None = None
    provider: Provider | None = None
    candidates: tuple[Provider, ...] = ()  # provider first, then its fallbacks, in order
    attempts: int = 0  # upstream requests made
    fallback_from: str | None = None  # the first choice, when a fallback served
    route: str | None = None
    explicit: bool = False  # the client named a configured model or alias (not the default fallback)
    decision: Any = None  # the router's Decision, when one was made
    upstream_body: bytes | None = None  # the request as the upstream expects it
    upstream_ms: float | None = None  # request sent -> upstream response headers
    client_gone: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)  # e.g. the key's rate-limit state
    status: int = 0  # the status sent to the client
    ttft_ms: float | None = None  # first body byte of a stream
    input_tokens: int | None = None  # as reported by the upstream
    output_tokens: int | None = None
    cache_read_tokens: int | None = None  # part of input_tokens read from the upstream's prompt cache
    cache_write_tokens: int | None = None  # part of input_tokens written to it
    counted_tokens: int | None = None  # input tokens by our tokenizer (gateway/chain/translate.py counted_input)
    streamed_chars: int = 0  # generated characters seen in the stream (for a stream cut before its usage)
    error_type: str | None = None  # the last upstream failure's kind (gateway/upstream.py error_kind)
    usage_estimated: bool = False  # output_tokens estimated from streamed_chars, not reported
    billed: tuple[int, int] | None = None  # (input, output) tokens a limited key was charged (gateway/chain/quota.py)
    responses: bool = False  # the client speaks the OpenAI Responses API (POST /v1/responses)
    tool_table: Any = None  # Responses: what its custom and namespace tools became upstream
    responses_stream: Any = None  # Responses: the stream translator, for an error after the headers

    @property
    def wire(self) -> str:
        """The client's protocol as the router names it: anthropic, openai or responses."""
        return "responses" if self.responses else self.protocol.value

    @property
    def upstream_api(self) -> ApiStyle:
        """The wire protocol of the request to the current provider: its own, or RESPONSES when a
        Responses client is relayed to an upstream that serves that API natively."""
        provider = self.provider
        if provider is None:
            return self.protocol
        return ApiStyle.RESPONSES if self.responses and provider.native_responses else provider.api

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def add_usage(self, usage: Usage) -> None:
        """Keep the latest figures an upstream reported (streams report them in pieces)."""
        if usage.input is not None:
            self.input_tokens = usage.input
        if usage.output is not None:
            self.output_tokens = usage.output
        if usage.cache_read is not None:
            self.cache_read_tokens = usage.cache_read
        if usage.cache_write is not None:
            self.cache_write_tokens = usage.cache_write

    def estimate_cut_usage(self) -> None:
        """A stream that ended without a usage report (client gone, upstream died) is still
        accounted: about 4 characters a token for what it had produced."""
        if self.output_tokens is None and self.streamed_chars:
            self.output_tokens = -(-self.streamed_chars // 4)
            self.usage_estimated = True

    def debug_headers(self) -> list[tuple[bytes, bytes]]:
        """The x-junction-* headers every response carries (streams included)."""
        out = [(b"x-junction-request-id", self.request_id.encode())]
        if self.provider is not None:
            out.append((b"x-junction-model", self.provider.model.encode()))
        if self.alias is not None:
            out.append((b"x-junction-alias", self.alias.encode()))
        if self.endpoint not in ("models", "metrics", "stored"):
            out.append((b"x-junction-route", (self.route or "none").encode()))
        decision = self.decision
        if decision is not None:
            if decision.score is not None:
                out.append((b"x-junction-route-score", f"{decision.score:.4f}".encode()))
            if decision.margin is not None:
                out.append((b"x-junction-route-margin", f"{decision.margin:.4f}".encode()))
            out.append((b"x-junction-route-ms", f"{decision.latency_ms:.2f}".encode()))
            out.append((b"x-junction-route-reason", decision.reason.encode()))
        if self.upstream_ms is not None:
            out.append((b"x-junction-upstream-ms", f"{self.upstream_ms:.2f}".encode()))
        if self.attempts:
            out.append((b"x-junction-attempts", str(self.attempts).encode()))
        if self.fallback_from is not None:
            out.append((b"x-junction-fallback-from", self.fallback_from.encode()))
        out += [(k.encode(), v.encode()) for k, v in self.extra_headers.items()]
        return out


def get_call(scope: dict[str, Any]) -> Call:
    return scope["state"][STATE_KEY]
