"""Quota layer: tokens per minute per gateway key, reserved before the upstream call.

The reservation is the request's input estimate plus its `max_tokens`, taken before any upstream
call and settled to the real usage afterwards, so concurrent bursts cannot all slip under the
limit: at most the one request that finds the window empty may overshoot it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any, Callable

from gateway.call import get_call
from gateway.config import GatewayKey
from gateway.errors import GatewayError
from models.tokens import count_anthropic_tokens

WINDOW = 60.0
DEFAULT_OUTPUT_RESERVATION = 1024  # when the request sets no max_tokens


class TokenWindow:
    """Per-key (time, tokens) entries of the last minute; entries are mutable for settling."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[str, deque[list[float]]] = {}

    def used(self, key: str) -> tuple[float, deque[list[float]]]:
        now = self.clock()
        entries = self._entries.setdefault(key, deque())
        while entries and entries[0][0] <= now - WINDOW:
            entries.popleft()
        return sum(e[1] for e in entries), entries

    def reserve(self, key: GatewayKey, tokens: int) -> list[float]:
        assert key.tpm is not None
        used, entries = self.used(key.name)
        if entries and used + tokens > key.tpm:
            wait = max(1, math.ceil(entries[0][0] + WINDOW - self.clock()))
            raise GatewayError(f"token limit of {key.tpm} per minute reached for key '{key.name}' "
                               f"({int(used)} used or reserved, this request needs about {tokens}); retry in {wait} s",
                               status=429, code="token_rate_limit_exceeded",
                               headers={"retry-after": str(wait)})  # fmt: skip
        entry = [self.clock(), float(tokens)]
        entries.append(entry)
        return entry


def reservation(body: dict[str, Any]) -> int:
    """Input estimate plus the most the answer may cost."""
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_OUTPUT_RESERVATION
    messages = {"messages": body.get("messages") or [], "system": body.get("system"), "tools": body.get("tools")}
    return count_anthropic_tokens(messages) + (limit if isinstance(limit, int) else DEFAULT_OUTPUT_RESERVATION)


class Quota:
    def __init__(self, app: Any, window: TokenWindow | None = None) -> None:
        self.app = app
        self.window = window or TokenWindow()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        key = call.key
        if key is None or key.tpm is None or call.body is None or call.endpoint != "chat":
            await self.app(scope, receive, send)
            return
        body = call.body
        # Counting a big body takes milliseconds of CPU: not on the event loop.
        tokens = await asyncio.to_thread(reservation, body) if call.body_size > 256 * 1024 else reservation(body)
        entry = self.window.reserve(key, tokens)
        try:
            await self.app(scope, receive, send)
        finally:
            # Settle to what the upstream reported (keep the reservation when it reported nothing).
            if call.input_tokens is not None or call.output_tokens is not None:
                entry[1] = float((call.input_tokens or 0) + (call.output_tokens or 0))
