"""Quota layer: a key's limits (requests per minute, requests in flight, tokens per minute) admitted in
one call to the key state, and its spend budget, both before the upstream call.

A reservation is the request's input estimate plus its `max_tokens` (priced with the dearest
model the request may fail over to, for a budget), taken before any upstream call and settled to
the real usage afterwards. Concurrent bursts cannot all slip under a limit: only requests that
find it not yet reached are admitted, so the overshoot is at most one request's reservation.

The state lives in `Ledgers`, which outlives config reloads (a SIGHUP must not reset a budget): the key
state (`gateway/state`: this process, or Redis shared by every worker and replica) keeps every limit,
spend included, in integer nano-dollars with holds apart from committed spend.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.call import Call, get_call
from gateway.chain.translate import counted_input
from gateway.config import GatewayKey
from gateway.errors import GatewayError
from gateway.state import Admission, KeyState, Limits
from gateway.state.local import LocalState
from models.providers import ApiStyle
from models.tokens import count_anthropic_tokens

log = logging.getLogger("junction")

DEFAULT_OUTPUT_RESERVATION = 1024  # when the request sets no max_tokens
LEDGER_READ_S = 2.0  # a budget's seed from the usage ledger waits at most this long


@dataclass
class Ledgers:
    """Every per-key counter (`state`: requests per minute, in flight, tokens, spend), the model health and
    the usage ledger (one row per request, in a database)."""

    state: KeyState = field(default_factory=LocalState)
    health: Any = None  # the serving app's model health (gateway/cooldown.py), set when the chain is built
    usage: Any = None  # gateway.ledger.Ledger, unless `ledger: {backend: off}`
    recent: Any = None  # gateway.recent.RecentRequests: the latest requests, for the console

    async def start(self) -> None:
        await self.state.warm()  # a shared store's connection and scripts, before the first request
        if self.usage is not None:
            await self.usage.start()

    async def close(self) -> None:
        if self.usage is not None:
            await self.usage.close()  # after the drain: the last requests' rows are in the buffer
        await self.state.close()


def estimate(body: dict[str, Any], size: int = 0, counted: int | None = None) -> tuple[int, int]:
    """(input tokens, the most output tokens the answer may have) for a body of `size` bytes whose
    input our tokenizer `counted` (counted here when not given).

    Upstream tokenizers and per-message overheads differ from our count, so the input side is
    at least a token per 4 bytes of the request: a reservation should not come in under the bill.
    """
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens") \
        or DEFAULT_OUTPUT_RESERVATION  # fmt: skip
    tokens = count_anthropic_tokens(body) if counted is None else counted
    return max(tokens, size // 4), limit if isinstance(limit, int) else DEFAULT_OUTPUT_RESERVATION


def charge(call: Call, estimated: tuple[int, int]) -> tuple[int, int] | None:
    """Tokens to bill for a finished call: the upstream's figures, the estimate for what it did not
    report, nothing for a call that got no answer at all."""
    if call.input_tokens is None and call.output_tokens is None:
        if call.status == 0 or call.status >= 400 or call.attempts == 0:
            return None  # refused, failed, or nothing sent to the client yet
        return estimated  # a stream cut before its usage: assume the worst
    return (call.input_tokens if call.input_tokens is not None else estimated[0],
            call.output_tokens if call.output_tokens is not None else estimated[1])  # fmt: skip


DEGRADED_HEADER = "x-junction-state"  # "degraded": limits were decided per process (shared store unreachable)


def limit_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    """OpenAI-style rate-limit headers, which clients of both protocols understand."""
    return {"x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{max(0.0, reset):.0f}s"}  # fmt: skip


NANO = 1_000_000_000  # budgets are kept in integer nano-dollars, as the usage ledger keeps cost


def refusal(key: GatewayKey, admission: Admission, tokens: int, protocol: ApiStyle) -> GatewayError:
    """The 429 (or, for a budget, 402 to Anthropic clients) for a request one of its key's limits refused."""
    if admission.refused in ("unavailable", "limits_unavailable", "unseeded"):
        # state.fail_mode closed for the feature, and the shared store is down (or lost a budget it cannot seed)
        what, code = ("limits", "limits_unavailable") if admission.refused == "limits_unavailable" else \
            ("spend", "budget_unavailable")  # fmt: skip
        return GatewayError(f"the {what} of key '{key.name}' cannot be checked right now (the shared state store is "
                            "unreachable); retry shortly", status=529 if protocol is ApiStyle.ANTHROPIC else 503,
                            code=code, headers={"retry-after": str(admission.retry_after)})  # fmt: skip
    if admission.refused == "budget":
        headers = {"x-should-retry": "false"}
        message = f"budget of ${key.budget_usd:g} reached for key '{key.name}' (${admission.spent / NANO:.4f} spent"
        if admission.window_end:
            renews = max(1, math.ceil(admission.window_end - time.time()))
            headers = {"retry-after": str(renews)}
            message += f"; it renews in {renews} s"
        # Anthropic clients know 402 billing_error; OpenAI clients know 429 insufficient_quota.
        status, code = (402, "billing_error") if protocol is ApiStyle.ANTHROPIC else (429, "insufficient_quota")
        return GatewayError(message + ")", status=status, code=code, headers=headers)
    wait = admission.retry_after
    if admission.refused == "parallel":
        return GatewayError(f"key '{key.name}' already has {admission.count} requests in flight "
                            f"(limit {key.max_parallel})", status=429, code="too_many_parallel_requests",
                            headers={"retry-after": str(wait)})  # fmt: skip
    if admission.refused == "tpm":
        return GatewayError(f"token limit of {key.tpm} per minute reached for key '{key.name}' ({int(admission.used)} "
                            f"used or reserved, this request needs about {tokens}); retry in {wait} s", status=429,
                            code="token_rate_limit_exceeded", headers={"retry-after": str(wait)})  # fmt: skip
    assert key.rpm is not None
    return GatewayError(f"rate limit of {key.rpm} requests per minute reached for key '{key.name}'; retry in {wait} s",
                        status=429, code="rate_limit_exceeded",
                        headers={"retry-after": str(wait), **limit_headers(key.rpm, 0, admission.reset_s)})  # fmt: skip


class Quota:
    """Sits after routing: a budget depends on which models may serve the request."""

    def __init__(self, app: Any, ledgers: Ledgers, metrics: Any = None) -> None:
        self.app = app
        self.ledgers = ledgers
        self.metrics = metrics

    async def _ledger_spend(self, key_name: str, since: int) -> int:
        """The key's spend since `since` in the usage ledger (nano-dollars); 0 without one.
        A ledger that cannot be read gives 0 with a warning: the store's own count still stands."""
        usage = self.ledgers.usage
        if usage is None:
            return 0
        try:
            return int(await asyncio.wait_for(usage.spent_nano(key_name, since), LEDGER_READ_S))
        except Exception as exc:  # noqa: BLE001 - a database outage must not refuse requests
            log.warning("budget of key %r: the usage ledger cannot be read (%s); its spend starts from what the "
                        "key state holds", key_name, exc)  # fmt: skip
            return 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        key = call.key
        limited = key is not None and (key.rpm is not None or key.max_parallel is not None or key.tpm is not None
                                       or key.budget_usd is not None)  # fmt: skip
        if not limited or call.body is None or call.endpoint not in ("chat", "count_tokens"):
            await self.app(scope, receive, send)
            return
        assert key is not None
        chat = call.endpoint == "chat"
        # Tokens and spend are a chat call's; a token count still counts against requests and slots.
        estimated = estimate(call.body, call.body_size, await counted_input(call)) if chat and \
            (key.tpm is not None or key.budget_usd is not None) else (0, 0)  # fmt: skip
        budget = round(key.budget_usd * NANO) if key.budget_usd is not None and chat else None
        # A budget holds the request's worst case: its estimate at the dearest model it may fail over to.
        hold = max((p.pricing.nano(*estimated) for p in call.candidates if p.pricing is not None), default=0) \
            if budget is not None else 0  # fmt: skip
        limits = Limits(key.rpm, key.max_parallel, key.tpm if chat else None, budget, key.budget_window_s)
        if not limits.any:  # a budget-only key's token count: nothing to admit
            await self.app(scope, receive, send)
            return
        state = self.ledgers.state
        admission = await state.admit(key.name, limits, sum(estimated), call.request_id, hold)
        if admission.refused == "unseeded":  # first use of the window here, or Redis lost it: from the ledger
            await state.seed(key.name, admission.window, admission.window_end,
                             await self._ledger_spend(key.name, admission.window))  # fmt: skip
            admission = await state.admit(key.name, limits, sum(estimated), call.request_id, hold)
        if admission.degraded:
            call.extra_headers[DEGRADED_HEADER] = "degraded"
        if not admission.ok:
            raise refusal(key, admission, sum(estimated), call.protocol)
        if key.rpm is not None:
            call.extra_headers.update(limit_headers(key.rpm, max(0, key.rpm - admission.count), admission.reset_s))
        if budget is not None:
            call.extra_headers["x-junction-budget-remaining-usd"] = f"{max(0, budget - admission.spent - admission.held) / NANO:.9f}"
        try:
            await self.app(scope, receive, send)
        finally:
            # However the request ended (done, failed, or the client left): the slot comes back, the token
            # reservation becomes what was used and the budget hold what it cost. The ledger's row shows
            # the same tokens (`call.billed`), so committed spend and the ledger's sum agree to the unit.
            billed = charge(call, estimated) if chat else None
            call.billed = billed
            pricing = call.provider.pricing if call.provider is not None else None
            cost = pricing.nano(*billed) if billed and pricing is not None and budget is not None else 0
            await state.settle(key.name, admission, sum(billed) if billed else 0, cost)
            if budget is not None and self.metrics is not None:
                self.metrics.spend.labels(key.name).inc(cost / NANO)
