"""Per-key limit state: requests per minute, requests in flight, tokens per minute.

Two backends with the same semantics: `LocalState` (this process's memory, the default) and
`SharedState` (one Redis for every worker and replica; `state: {backend: redis, url}`). Each
admission is one call (one Redis round trip: an atomic server-side script); what the request used
is settled afterwards off the response path. Model cooldowns are announced to every process through
the store, and `SharedState.sessions` shares the router's session bindings. Spend budgets stay per
process for now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

WINDOW_S = 60.0  # requests and tokens per minute: a sliding window of this length


@dataclass(frozen=True)
class Admission:
    """The verdict on one request of a key (requests per minute and in flight)."""

    ok: bool
    refused: str | None = None  # "rpm" or "parallel"
    count: int = 0  # requests in the window (with this one when admitted) or in flight when refused
    reset_s: float = WINDOW_S  # until the oldest request of the window leaves it
    lease: str | None = None  # the in-flight slot to release, when the key has max_parallel
    degraded: bool = False  # decided locally because the shared store was unreachable

    @property
    def retry_after(self) -> int:
        return 1 if self.refused == "parallel" else max(1, math.ceil(self.reset_s))


@dataclass(frozen=True)
class Reservation:
    """The verdict on a key's tokens for one request: reserved (`entry` to settle) or refused."""

    ok: bool
    used: float = 0.0  # tokens used or reserved in the window before this request
    reset_s: float = WINDOW_S
    entry: str | None = None
    degraded: bool = False

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_s))


class KeyState(Protocol):
    async def admit(self, key: str, rpm: int | None, max_parallel: int | None, request_id: str) -> Admission:
        """Count one request against `rpm` and take a slot under `max_parallel` (either may be None), or
        refuse without counting it."""
        ...

    async def release(self, key: str, admission: Admission) -> None:
        """Give back the in-flight slot of an admitted request."""
        ...

    async def reserve(self, key: str, tpm: int, tokens: int, request_id: str) -> Reservation:
        """Reserve `tokens` of the key's tokens per minute, or refuse (the first request of an empty window
        is always admitted, so a single request larger than the limit is not refused forever)."""
        ...

    async def settle(self, key: str, reservation: Reservation, tokens: int) -> None:
        """Replace a reservation by what the request really used."""
        ...

    def announce_cooldown(self, model: str, seconds: float) -> None:
        """Tell the other processes that `model` cools for `seconds` (nothing to do when alone)."""
        ...

    def follow_cooldowns(self, apply: Callable[[str, float], None]) -> None:
        """Call `apply(model, seconds)` for every cooldown another process announces (from now on)."""
        ...

    async def close(self) -> None: ...
