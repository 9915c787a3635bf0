"""Auth layer: gateway keys, checked before the body is read.

With `gateway_keys` configured every request must carry one of them as `x-api-key` or
`Authorization: Bearer`; otherwise it is refused with 401 and no upstream request is made.
Keys are stored as SHA-256 digests and compared in constant time against every key. A key's
requests per minute and requests in flight are admitted here, in one call to the key state
(`gateway/state`: this process, or Redis shared by every worker and replica).
"""

from __future__ import annotations

import hmac
from typing import Any

from gateway.call import get_call
from gateway.config import Config, GatewayKey, sha256
from gateway.errors import GatewayError, Unauthorized
from gateway.state import Admission, KeyState
from gateway.state.local import LocalState


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


def limit_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    """OpenAI-style rate-limit headers, which clients of both protocols understand."""
    return {"x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{max(0.0, reset):.0f}s"}  # fmt: skip


class Auth:
    def __init__(self, app: Any, config: Config, state: KeyState | None = None) -> None:
        self.app = app
        self.config = config
        self.state: KeyState = state if state is not None else LocalState()  # per-key limits (gateway/state)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        credential = presented_credential(call.headers)
        if not self.config.auth_enabled:
            # Without gateway keys the credential may belong to a passthrough_auth provider.
            call.credential = credential
            await self.app(scope, receive, send)
            return
        if credential is None:
            raise Unauthorized("missing gateway key: send it as x-api-key or Authorization: Bearer")
        key = call.key = match_key(self.config.gateway_keys, credential)
        if key is None:
            raise Unauthorized("invalid gateway key")
        if key.rpm is None and key.max_parallel is None:
            await self.app(scope, receive, send)
            return
        admission = await self.state.admit(key.name, key.rpm, key.max_parallel, call.request_id)
        if admission.degraded:
            call.extra_headers[DEGRADED_HEADER] = "degraded"
        if not admission.ok:
            raise refusal(key, admission)
        if key.rpm is not None:
            reset = admission.reset_s
            call.extra_headers.update(limit_headers(key.rpm, max(0, key.rpm - admission.count), reset))
        try:
            await self.app(scope, receive, send)
        finally:
            # The slot is freed however the request ends (done, failed, or the client went away).
            await self.state.release(key.name, admission)


DEGRADED_HEADER = "x-junction-state"  # "degraded": limits were decided per process (shared store unreachable)


def refusal(key: GatewayKey, admission: Admission) -> GatewayError:
    """The 429 for a request its key's limits refused."""
    wait = admission.retry_after
    if admission.refused == "parallel":
        return GatewayError(f"key '{key.name}' already has {admission.count} requests in flight "
                            f"(limit {key.max_parallel})", status=429, code="too_many_parallel_requests",
                            headers={"retry-after": str(wait)})  # fmt: skip
    assert key.rpm is not None
    return GatewayError(f"rate limit of {key.rpm} requests per minute reached for key '{key.name}'; retry in {wait} s",
                        status=429, code="rate_limit_exceeded",
                        headers={"retry-after": str(wait), **limit_headers(key.rpm, 0, admission.reset_s)})  # fmt: skip
