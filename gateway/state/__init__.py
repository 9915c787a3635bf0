"""Per-key limit state: requests per minute, requests in flight, tokens per minute.

Two backends with the same semantics: `LocalState` (this process's memory, the default) and
`SharedState` (one Redis for every worker and replica; `state: {backend: redis, url}`). A request's
admission under all of its key's limits is one call (one Redis round trip: an atomic server-side
script); what it used is settled in one more afterwards, off the response path. Model cooldowns are announced to every process through
the store, and `SharedState.sessions` shares the router's session bindings. Spend budgets stay per
process for now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

WINDOW_S = 60.0  # requests and tokens per minute: a sliding window of this length


@dataclass(frozen=True)
class Limits:
    """One key's limits (None: none of that kind)."""

    rpm: int | None = None  # requests per minute
    max_parallel: int | None = None  # requests in flight
    tpm: int | None = None  # tokens per minute (input + output)
    budget: int | None = None  # spend, in nano-dollars
    budget_window_s: float | None = None  # the budget renews every window (epoch-aligned); None: never

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.max_parallel, self.tpm, self.budget))

    def window_start(self, now: float) -> int:
        """The current budget window's start (epoch seconds; 0 for a budget that never renews)."""
        window = self.budget_window_s
        return int(math.floor(now / window) * window) if window else 0

    def window_end(self, start: int) -> float:
        return start + self.budget_window_s if self.budget_window_s else 0.0


@dataclass(frozen=True)
class Admission:
    """The verdict on one request of a key: admitted (with what to settle afterwards) or refused by one
    limit, in which case nothing was counted or taken."""

    ok: bool
    # "parallel", "rpm", "tpm", "budget", "unavailable" (a budget, the store down, fail mode closed),
    # "limits_unavailable" (the same for rpm, tpm and max_parallel), or "unseeded": the budget
    # window's spend is not in the store (a new process, a Redis that lost its data): `seed` it, then admit again
    refused: str | None = None
    count: int = 0  # requests in the minute (this one included when admitted), or in flight when refused so
    reset_s: float = WINDOW_S  # until the oldest request (or, refused by tpm, reservation) leaves the window
    used: float = 0.0  # tokens used or reserved in the window before this request
    lease: str | None = None  # the in-flight slot to give back, when the key has max_parallel
    entry: str | None = None  # the token reservation to settle, when the key has tpm
    degraded: bool = False  # decided by this process alone because the shared store was unreachable
    spent: int = 0  # nano-dollars committed in the budget window
    held: int = 0  # nano-dollars other requests hold in it (this one's hold not included)
    hold: str | None = None  # this request's hold, to settle, when the key has a budget
    window: int = 0  # the budget window it belongs to (its start, epoch seconds)
    window_end: float = 0.0  # when that window ends (epoch seconds; 0: a budget that never renews)

    @property
    def retry_after(self) -> int:
        return 1 if self.refused == "parallel" else max(1, math.ceil(self.reset_s))


class KeyState(Protocol):
    async def admit(self, key: str, limits: Limits, tokens: int, request_id: str, hold: int = 0) -> Admission:
        """Check every limit of the key at once: count the request against `rpm`, take a slot under
        `max_parallel`, reserve `tokens` under `tpm` and hold `hold` nano-dollars of the budget (refused once
        spend plus holds reach it), or refuse without touching any. The first reservation of an empty token
        window is always admitted, so one request larger than the limit is not refused forever."""
        ...

    async def seed(self, key: str, window: int, window_end: float, spent: int) -> None:
        """Set the budget window's committed spend to at least `spent` nano-dollars (the usage ledger's
        sum): never lowered, so spend settled meanwhile is kept."""
        ...

    async def settle(self, key: str, admission: Admission, tokens: int, cost: int = 0) -> None:
        """After the request: give its slot back, replace its token reservation by the `tokens` it used, and
        its budget hold by its `cost` (nano-dollars, committed to the admission's budget window)."""
        ...

    def announce_cooldown(self, model: str, seconds: float) -> None:
        """Tell the other processes that `model` cools for `seconds` (nothing to do when alone)."""
        ...

    def count_failure(self, model: str, threshold: int, cooldown: float) -> None:
        """Count a failure of `model` for every process (the count lasts a minute); at `threshold` the model
        cools for `cooldown` seconds everywhere. Nothing to do when alone (`Health` counts)."""
        ...

    def clear_failures(self, model: str) -> None:
        """`model` answered again: its shared failure count starts over."""
        ...

    def announce_reload(self) -> None:
        """Tell the other processes that this one reloaded its config (revoked keys, new routes...)."""
        ...

    def follow_reloads(self, apply: Callable[[], None]) -> None:
        """Call `apply()` whenever another process announces a reload (from now on)."""
        ...

    def follow_cooldowns(self, apply: Callable[[str, float], None]) -> None:
        """Call `apply(model, seconds)` for every cooldown another process announces (from now on)."""
        ...

    async def warm(self) -> None:
        """Get ready before the first request (a shared store: connect and load its scripts)."""
        ...

    async def close(self) -> None: ...
