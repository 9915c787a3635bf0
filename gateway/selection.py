"""`selection_policy`: the order in which a route's models are tried.

A routing preference's `models` are its candidates; the policy only reorders them, and every model
stays in the list as the failover chain behind the first (the retry loop in `gateway/upstream.py`
tries them in order):

  none        configured order (the default)
  cheapest    by the providers' `pricing:` (blended 3:1 input:output); models without a price last
  fastest     by this gateway's own latency EWMA per model; unmeasured models first, plus a small
              exploration share so a model that recovers can win its traffic back
  weighted    (Junction) the first model drawn by `weights:`, the others in configured order
  least_busy  (Junction) the fewest requests in flight from this gateway first, ties in order

Plano ranks `cheapest`/`fastest` with `model_metrics_sources` (a price catalog, a Prometheus query).
Junction uses the `pricing:` of each provider entry and measures latency itself, so nothing
outside the gateway is needed; the observations live in this process only (each worker process
learns on its own) and survive config reloads, keyed by the provider model name.

The ranking functions are pure (state and randomness come in as arguments); `STATS` is the
process's state, fed by the upstream edge and read by the routing layer.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from gateway.config import Pricing

EXPLORE = 0.05  # share of `fastest` decisions that put a not-fastest model first, to re-measure it
ALPHA = 0.3  # EWMA weight of a new latency sample: a few samples are enough to follow a change
INPUT_SHARE = 0.75  # blended price = 3 parts input to 1 part output, as coding agents send far more than they get


class Candidate(Protocol):
    """What the ranking reads of a provider model (`gateway.config.Provider` fits)."""

    @property
    def model(self) -> str: ...

    @property
    def pricing(self) -> Pricing | None: ...


T = TypeVar("T", bound=Candidate)


class Stats:
    """What this gateway observed about each provider model: latency EWMA and requests in flight.

    Only touched from the event loop thread, so no locking is needed."""

    def __init__(self, alpha: float = ALPHA) -> None:
        self.alpha = alpha
        self.latency_ms: dict[str, float] = {}
        self.in_flight: dict[str, int] = {}

    def observe(self, model: str, ms: float) -> None:
        """One successful attempt's time to first byte."""
        old = self.latency_ms.get(model)
        self.latency_ms[model] = ms if old is None else old + self.alpha * (ms - old)

    @contextlib.contextmanager
    def busy(self, model: str) -> Iterator[None]:
        """Counts an upstream attempt as in flight until it ends, however it ends."""
        self.in_flight[model] = self.in_flight.get(model, 0) + 1
        try:
            yield
        finally:
            left = self.in_flight[model] - 1
            if left:
                self.in_flight[model] = left
            else:
                del self.in_flight[model]  # keeps the map as small as the set of busy models


STATS = Stats()
_RNG = random.Random()


def blended_price(pricing: Pricing) -> float:
    """USD per million tokens, weighted 3:1 input:output."""
    return INPUT_SHARE * pricing.input + (1 - INPUT_SHARE) * pricing.output


def by_cost(models: Sequence[T]) -> tuple[T, ...]:
    """Cheapest first; models without pricing last (as Plano ranks missing data), ties in order."""
    priced = sorted(((blended_price(m.pricing), i) for i, m in enumerate(models) if m.pricing is not None))
    return (*(models[i] for _, i in priced), *(m for m in models if m.pricing is None))


def by_latency(models: Sequence[T], latency_ms: Mapping[str, float], rng: random.Random,
               explore: float = EXPLORE) -> tuple[T, ...]:  # fmt: skip
    """Unmeasured models first (so they get measured), then the lowest EWMA; with probability
    `explore` a random other model goes first, so a slow model that recovered is noticed."""
    unmeasured = [m for m in models if m.model not in latency_ms]
    measured = sorted((m for m in models if m.model in latency_ms), key=lambda m: latency_ms[m.model])
    ranked = unmeasured + measured
    if len(ranked) > 1 and rng.random() < explore:
        ranked.insert(0, ranked.pop(rng.randrange(1, len(ranked))))
    return tuple(ranked)


def by_weight(models: Sequence[T], weights: Sequence[float], rng: random.Random) -> tuple[T, ...]:
    """The first model drawn by weight; the others keep their configured order as failover."""
    if len(models) < 2:
        return tuple(models)
    first = rng.choices(range(len(models)), weights=weights)[0]
    return (models[first], *models[:first], *models[first + 1:])


def by_load(models: Sequence[T], in_flight: Mapping[str, int]) -> tuple[T, ...]:
    """Fewest requests in flight first; ties keep the configured order (sorting is stable)."""
    return tuple(sorted(models, key=lambda m: in_flight.get(m.model, 0)))


def rank(models: Sequence[T], prefer: str, weights: Sequence[float] = (), stats: Stats = STATS,
         rng: random.Random = _RNG) -> tuple[T, ...]:  # fmt: skip
    """`models` in the order `prefer` wants them tried; `weights` align with `models`."""
    if prefer == "cheapest":
        return by_cost(models)
    if prefer == "fastest":
        return by_latency(models, stats.latency_ms, rng)
    if prefer == "weighted" and len(weights) == len(models):
        return by_weight(models, weights, rng)
    if prefer == "least_busy":
        return by_load(models, stats.in_flight)
    return tuple(models)
