"""Quota layer: a key's limits (requests per minute, requests in flight, tokens per minute) admitted in
one call to the key state, and its spend budget, both before the upstream call.

A reservation is the request's input estimate plus its `max_tokens` (priced with the dearest
model the request may fail over to, for a budget), taken before any upstream call and settled to
the real usage afterwards. Concurrent bursts cannot all slip under a limit: only requests that
find it not yet reached are admitted, so the overshoot is at most one request's reservation.

The state lives in `Ledgers`, which outlives config reloads (a SIGHUP must not reset a budget). Tokens
per minute are kept by the key state (`gateway/state`: this process, or Redis shared by every worker
and replica); spend budgets are this process's memory for now.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.call import Call, get_call
from gateway.chain.translate import counted_input
from gateway.config import GatewayKey
from gateway.errors import GatewayError
from gateway.state import Admission, KeyState, Limits
from gateway.state.local import LocalState
from models.providers import ApiStyle
from models.tokens import count_anthropic_tokens

DEFAULT_OUTPUT_RESERVATION = 1024  # when the request sets no max_tokens


@dataclass
class Account:
    """One key's spend in one budget window."""

    window_start: float
    spent: float = 0.0
    reserved: float = 0.0


class Budgets:
    """Spend per key in US dollars; windows are aligned to the epoch (a 24h window renews at 00:00
    UTC), so a restart does not move them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._accounts: dict[str, Account] = {}

    def account(self, key: GatewayKey) -> Account:
        window = key.budget_window_s
        start = math.floor(self.clock() / window) * window if window else 0.0
        account = self._accounts.get(key.name)
        if account is None or account.window_start != start:
            account = self._accounts[key.name] = Account(start)
        return account

    def reserve(self, key: GatewayKey, max_cost: float, protocol: ApiStyle) -> Account:
        assert key.budget_usd is not None
        account = self.account(key)
        if account.spent + account.reserved >= key.budget_usd:
            headers = {"x-should-retry": "false"}
            message = f"budget of ${key.budget_usd:g} reached for key '{key.name}' (${account.spent:.4f} spent"
            if key.budget_window_s:
                renews = max(1, math.ceil(account.window_start + key.budget_window_s - self.clock()))
                headers = {"retry-after": str(renews)}
                message += f"; it renews in {renews} s"
            # Anthropic clients know 402 billing_error; OpenAI clients know 429 insufficient_quota.
            status, code = (402, "billing_error") if protocol is ApiStyle.ANTHROPIC else (429, "insufficient_quota")
            raise GatewayError(message + ")", status=status, code=code, headers=headers)
        account.reserved += max_cost
        return account

    @staticmethod
    def settle(account: Account, reserved: float, cost: float) -> None:
        account.reserved -= reserved
        account.spent += cost


@dataclass
class Ledgers:
    """Every per-key counter: requests per minute, requests in flight and tokens (`state`), spend."""

    state: KeyState = field(default_factory=LocalState)
    budgets: Budgets = field(default_factory=Budgets)
    health: Any = None  # the serving app's model health (gateway/cooldown.py), set when the chain is built


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


def refusal(key: GatewayKey, admission: Admission, tokens: int) -> GatewayError:
    """The 429 for a request one of its key's limits refused."""
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
        limits = Limits(key.rpm, key.max_parallel, key.tpm if chat else None)
        state = self.ledgers.state
        admission = None
        if limits.any:
            admission = await state.admit(key.name, limits, sum(estimated), call.request_id)
            if admission.degraded:
                call.extra_headers[DEGRADED_HEADER] = "degraded"
            if not admission.ok:
                raise refusal(key, admission, sum(estimated))
            if key.rpm is not None:
                call.extra_headers.update(limit_headers(key.rpm, max(0, key.rpm - admission.count), admission.reset_s))
        billed: tuple[int, int] | None = None
        try:
            account, max_cost = None, 0.0
            if key.budget_usd is not None and chat:
                prices = [p.pricing for p in call.candidates if p.pricing is not None]
                max_cost = max((p.cost(*estimated) for p in prices), default=0.0)
                account = self.ledgers.budgets.reserve(key, max_cost, call.protocol)
                call.extra_headers["x-junction-budget-remaining-usd"] = \
                    f"{max(0.0, key.budget_usd - account.spent - account.reserved + max_cost):.6f}"
            try:
                await self.app(scope, receive, send)
            finally:
                billed = charge(call, estimated) if chat else None
                if account is not None:
                    pricing = call.provider.pricing if call.provider is not None else None
                    cost = pricing.cost(*billed) if billed and pricing is not None else 0.0
                    self.ledgers.budgets.settle(account, max_cost, cost)
                    if self.metrics is not None:
                        self.metrics.spend.labels(key.name).inc(cost)
        finally:
            # However the request ended (done, failed, refused by its budget, or the client left): the slot
            # comes back and the reservation becomes what was used.
            if admission is not None:
                await state.settle(key.name, admission, sum(billed) if billed else 0)
