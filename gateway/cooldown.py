"""Per-model health for the retry loop: consecutive failures, cooldown, half-open probe.

A model that failed `failures_to_cool` times in a row (or answered 429 with a Retry-After) is
skipped until its cooldown ends; then exactly one request probes it (half-open) while others
keep skipping it; the probe's success puts it back, its failure cools it again.

With a shared state store, a cooldown this process starts is announced to the others (`on_cool`)
and theirs arrive through `cool` (gateway/state/shared.py): a model that failed on one replica is
skipped by all of them. Failures are counted fleet-wide too (`on_fail`, and `on_recover` at the first
success after failures, so a healthy model costs the store nothing): two failures on one replica and
one on another cool a model whose `failures_to_cool` is 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

from gateway.config import Failover


@dataclass
class _State:
    failures: int = 0
    until: float = 0.0  # cooling until this time
    probing: bool = False  # a half-open probe is in flight


class Health:
    def __init__(self, policy: Failover, clock: Callable[[], float] = time.monotonic,
                 on_cool: Callable[[str, float], None] | None = None, on_fail: Callable[[str], None] | None = None,
                 on_recover: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.policy = policy
        self.clock = clock
        self.on_cool = on_cool  # told (model, seconds) whenever this process cools a model
        self.on_fail = on_fail  # told of each failure that did not cool the model here
        self.on_recover = on_recover  # told of the first success after failures
        self._states: dict[str, _State] = {}

    def cool(self, model: str, seconds: float) -> None:
        """A cooldown another process started: skip `model` for `seconds` from now."""
        state = self._states.setdefault(model, _State())
        state.until = max(state.until, self.clock() + seconds)

    def admit(self, model: str) -> bool:
        """May a request go to `model` now? Takes the half-open probe slot when it is free."""
        state = self._states.get(model)
        if state is None or state.until == 0.0:
            return True
        if self.clock() < state.until or state.probing:
            return False
        state.probing = True
        return True

    def success(self, model: str) -> None:
        state = self._states.pop(model, None)
        if state is not None and state.failures and self.on_recover is not None:
            self.on_recover(model)

    def failure(self, model: str, retry_after: float | None = None) -> bool:
        """Record a failure; True when it put the model into cooldown."""
        state = self._states.setdefault(model, _State())
        state.failures += 1
        now = self.clock()
        cool_for = 0.0
        if state.probing or state.failures >= self.policy.failures_to_cool:
            cool_for = self.policy.cooldown
        if retry_after:
            cool_for = max(cool_for, retry_after)
        state.probing = False
        if cool_for:
            state.until = max(state.until, now + cool_for)
            if self.on_cool is not None:
                self.on_cool(model, cool_for)
            return True
        if self.on_fail is not None:
            self.on_fail(model)
        return False

    def release(self, model: str) -> None:
        """A probe that ended without a verdict (e.g. the client left) frees the slot."""
        state = self._states.get(model)
        if state is not None:
            state.probing = False

    def reopens_in(self, models: Iterable[str]) -> float:
        """Seconds until the first of `models` may be tried again."""
        now = self.clock()
        waits = [max(0.0, s.until - now) for m in models if (s := self._states.get(m)) is not None]
        return min(waits) if waits else 0.0

    def failures(self) -> dict[str, int]:
        """Failures in a row per model (since its last success)."""
        return {m: s.failures for m, s in self._states.items() if s.failures}

    def cooling(self) -> dict[str, float]:
        now = self.clock()
        return {m: s.until - now for m, s in self._states.items() if s.until > now}
