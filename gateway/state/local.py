"""`LocalState`: per-key limits in this process's memory (exact sliding windows).

With several workers each keeps its own books, so a limit is enforced per worker; `SharedState` keeps
one set of books in Redis and falls back to a `LocalState` with a share of each limit when Redis is
unreachable.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

from gateway.state import WINDOW_S, Admission, Limits


class LocalState:
    def __init__(self, clock: Callable[[], float] = time.monotonic, share: float = 1.0) -> None:
        self.clock = clock
        self.share = share  # of each limit this process may use on its own (SharedState's fallback)
        self._hits: dict[str, deque[float]] = {}
        self._running: dict[str, int] = {}
        self._tokens: dict[str, deque[list[float | str]]] = {}  # [time, tokens, request id]
        self._spent: dict[tuple[str, int], int] = {}  # (key, window) -> nano-dollars
        self._holds: dict[tuple[str, int], dict[str, int]] = {}  # (key, window) -> request id -> nano-dollars
        self.wall = time.time  # budget windows are epoch-aligned

    def _limit(self, value: int) -> int:
        return max(1, math.floor(value * self.share)) if self.share < 1 else value

    async def admit(self, key: str, limits: Limits, tokens: int, request_id: str, hold: int = 0) -> Admission:
        now = self.clock()
        if limits.max_parallel is not None and self._running.get(key, 0) >= self._limit(limits.max_parallel):
            return Admission(False, "parallel", self._running.get(key, 0))
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - WINDOW_S:
            hits.popleft()
        reset = hits[0] + WINDOW_S - now if hits else WINDOW_S
        if limits.rpm is not None and len(hits) >= self._limit(limits.rpm):
            return Admission(False, "rpm", len(hits), reset)
        entries = self._tokens.setdefault(key, deque())
        while entries and float(entries[0][0]) <= now - WINDOW_S:
            entries.popleft()
        used = sum(float(e[1]) for e in entries)
        if limits.tpm is not None and entries and used + tokens > self._limit(limits.tpm):
            return Admission(False, "tpm", len(hits), float(entries[0][0]) + WINDOW_S - now, used)
        window = limits.window_start(self.wall())
        if limits.budget is not None and (key, window) not in self._spent:
            return Admission(False, "unseeded", window=window, window_end=limits.window_end(window))
        spent = self._spent.get((key, window), 0)
        held = sum(self._holds.get((key, window), {}).values())
        if limits.budget is not None and spent + held >= self._limit(limits.budget):
            return Admission(False, "budget", len(hits), reset, used, spent=spent, held=held, window=window,
                             window_end=limits.window_end(window))  # fmt: skip
        # every limit holds: now count, reserve and take
        count = 0
        if limits.rpm is not None:
            hits.append(now)
            count = len(hits)
        entry = None
        if limits.tpm is not None:
            entries.append([now, float(tokens), request_id])
            entry = request_id
        lease = None
        if limits.max_parallel is not None:
            self._running[key] = self._running.get(key, 0) + 1
            lease = request_id
        held_by = None
        if limits.budget is not None:
            self._holds.setdefault((key, window), {})[request_id] = hold
            held_by = request_id
        return Admission(True, None, count, reset, used, lease, entry, spent=spent, held=held, hold=held_by, window=window,
                         window_end=limits.window_end(window))  # fmt: skip

    async def seed(self, key: str, window: int, window_end: float, spent: int) -> None:
        self._spent[(key, window)] = max(spent, self._spent.get((key, window), 0))

    async def settle(self, key: str, admission: Admission, tokens: int, cost: int = 0) -> None:
        if admission.hold is not None:
            self._holds.get((key, admission.window), {}).pop(admission.hold, None)
            if (key, admission.window) in self._spent:  # else the next seed counts it, from the ledger
                self._spent[(key, admission.window)] += cost
        if admission.lease is not None and self._running.get(key, 0) > 0:
            self._running[key] -= 1
        if admission.entry is not None:
            for entry in self._tokens.get(key, ()):
                if entry[2] == admission.entry:
                    entry[1] = float(tokens)
                    break

    def announce_cooldown(self, model: str, seconds: float) -> None:
        return None  # one process: its own Health already knows

    def follow_cooldowns(self, apply: Callable[[str, float], None]) -> None:
        return None

    def count_failure(self, model: str, threshold: int, cooldown: float) -> None:
        return None

    def clear_failures(self, model: str) -> None:
        return None

    def announce_reload(self) -> None:
        return None  # one process: SIGHUP reached it (a supervisor passes it to every worker)

    def follow_reloads(self, apply: Callable[[], None]) -> None:
        return None

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None
