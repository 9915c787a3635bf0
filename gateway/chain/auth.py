"""Auth layer: gateway keys, checked before the body is read.

With `gateway_keys` configured every request must carry one of them as `x-api-key` or
`Authorization: Bearer`; otherwise it is refused with 401 and no upstream request is made.
Keys are stored as SHA-256 digests and compared in constant time against every key.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from typing import Any, Callable

from gateway.call import get_call
from gateway.config import Config, GatewayKey, sha256
from gateway.errors import GatewayError, Unauthorized


def presented_credential(headers: dict[str, str]) -> str | None:
    """The client's credential: `x-api-key`, else an `Authorization: Bearer` token."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def match_key(keys: tuple[GatewayKey, ...], credential: str | None) -> GatewayKey | None:
    """The matching key, comparing against all of them so timing does not reveal which."""
    digest = sha256(credential or "")
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest) and credential is not None:
            found = key
    return found


class RateLimiter:
    """Requests per minute per gateway key: an exact sliding window, in this process's memory
    (with several workers each enforces the limit on its own share of the traffic)."""

    WINDOW = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def take(self, key: GatewayKey) -> tuple[int, int, float]:
        """Count one request: (limit, remaining, seconds until a slot frees). Raises 429 when full."""
        assert key.rpm is not None
        now = self.clock()
        hits = self._hits.setdefault(key.name, deque())
        while hits and hits[0] <= now - self.WINDOW:
            hits.popleft()
        reset = hits[0] + self.WINDOW - now if hits else self.WINDOW
        if len(hits) >= key.rpm:
            wait = max(1, math.ceil(reset))
            raise GatewayError(f"rate limit of {key.rpm} requests per minute reached for key '{key.name}'; "
                               f"retry in {wait} s", status=429, code="rate_limit_exceeded",
                               headers={"retry-after": str(wait), **limit_headers(key.rpm, 0, reset)})  # fmt: skip
        hits.append(now)
        return key.rpm, key.rpm - len(hits), reset


def limit_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    """OpenAI-style rate-limit headers, which clients of both protocols understand."""
    return {"x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{max(0.0, reset):.0f}s"}  # fmt: skip


class Auth:
    def __init__(self, app: Any, config: Config, limiter: RateLimiter | None = None,
                 parallel: dict[str, int] | None = None) -> None:  # fmt: skip
        self.app = app
        self.config = config
        self.limiter = limiter or RateLimiter()
        self.parallel = parallel if parallel is not None else {}  # requests in flight per key name

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        credential = presented_credential(call.headers)
        if self.config.auth_enabled:
            if credential is None:
                raise Unauthorized("missing gateway key: send it as x-api-key or Authorization: Bearer")
            call.key = match_key(self.config.gateway_keys, credential)
            if call.key is None:
                raise Unauthorized("invalid gateway key")
            if call.key.rpm is not None:
                call.extra_headers.update(limit_headers(*self.limiter.take(call.key)))
            if call.key.max_parallel is not None:
                await self._limited(call.key, scope, receive, send)
                return
        else:
            # Without gateway keys the credential may belong to a passthrough_auth provider.
            call.credential = credential
        await self.app(scope, receive, send)

    async def _limited(self, key: GatewayKey, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """At most `max_parallel` requests of this key at once; the slot is freed however the
        request ends (done, failed, or the client went away)."""
        assert key.max_parallel is not None
        running = self.parallel.get(key.name, 0)
        if running >= key.max_parallel:
            raise GatewayError(f"key '{key.name}' already has {running} requests in flight (limit {key.max_parallel})",
                               status=429, code="too_many_parallel_requests", headers={"retry-after": "1"})  # fmt: skip
        self.parallel[key.name] = running + 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.parallel[key.name] -= 1
