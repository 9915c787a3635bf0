"""`selection_policy` (gateway/selection.py): the pure rankings, config parsing and validation, the
routing layer's use of them, and end to end through a gateway process and the mock upstream
(R16: weighted split, fastest after warm-up, least-busy under concurrency)."""

from __future__ import annotations

import asyncio
import random
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.call import Call
from gateway.chain.routing import POLICY_HEADER, Routing, ranked
from gateway.config import (
    Config,
    ConfigError,
    GatewayKey,
    Provider,
    SelectionPolicy,
    parse,
)
from gateway.selection import (
    EXPLORE,
    Stats,
    blended_price,
    by_cost,
    by_latency,
    by_load,
    by_weight,
    rank,
)
from models.providers import ApiStyle
from router.preferences import Decision
from tests.procs import start_gateway, write_config

# -- helpers -----------------------------------------------------------------------------------

PROVIDERS = """
version: v0.4.0
llm_providers:
  - model: openai/a
    access_key: sk-a
    pricing: {input: 3, output: 15}
  - model: openai/b
    access_key: sk-b
    pricing: {input: 0.5, output: 2}
  - model: openai/c
    access_key: sk-c
  - model: openai/d
    access_key: sk-d
    pricing: {input: 1, output: 4}
"""


def cfg(routes: str, providers: str = PROVIDERS) -> Config:
    return parse(textwrap.dedent(providers) + "routing_preferences:\n" + textwrap.indent(textwrap.dedent(routes), "  "),
                 {})  # fmt: skip


def problems(routes: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        cfg(routes)
    return info.value.problems


def route(models: str, policy: str = "") -> str:
    """One route `r` over `models` (a YAML list), with `policy` as its selection_policy."""
    text = f"- name: r\n  description: anything at all\n  models: {models}\n"
    return text + (f"  selection_policy: {policy}\n" if policy else "")


@pytest.fixture(scope="module")
def models() -> tuple[Provider, ...]:
    """openai/a (3 + 15 USD), openai/b (0.5 + 2), openai/c (no pricing), openai/d (1 + 4)."""
    return cfg(route("[a, b, c, d]")).preferences[0].models


def names(models: tuple[Provider, ...]) -> list[str]:
    return [m.model.split("/")[1] for m in models]


# -- pure rankings -----------------------------------------------------------------------------


def test_weighted_3_to_1_over_4000_draws_is_within_5_percent(models: tuple[Provider, ...]) -> None:
    rng = random.Random(16)
    firsts = Counter(by_weight(models[:2], [3, 1], rng)[0].model for _ in range(4000))
    share = firsts["openai/a"] / 4000
    assert abs(share - 0.75) <= 0.05, share
    assert abs(firsts["openai/b"] / 4000 - 0.25) <= 0.05


def test_weighted_keeps_the_others_in_configured_order_as_failover(models: tuple[Provider, ...]) -> None:
    rng = random.Random(1)
    orders = {tuple(names(by_weight(models, [1, 1, 1, 1], rng))) for _ in range(400)}
    assert orders == {("a", "b", "c", "d"), ("b", "a", "c", "d"), ("c", "a", "b", "d"), ("d", "a", "b", "c")}
    assert names(by_weight(models[:1], [5], rng)) == ["a"]


def test_fastest_ranks_by_latency_with_unmeasured_models_first(models: tuple[Provider, ...]) -> None:
    never = random.Random(0)
    latency = {"openai/a": 250.0, "openai/b": 40.0, "openai/d": 90.0}
    assert names(by_latency(models, latency, never, explore=0)) == ["c", "b", "d", "a"]
    assert names(by_latency(models, {}, never, explore=0)) == ["a", "b", "c", "d"]  # all unmeasured: in order


def test_fastest_explores_a_small_share_of_requests(models: tuple[Provider, ...]) -> None:
    rng = random.Random(7)
    latency = {"openai/a": 200.0, "openai/b": 5.0}
    firsts = Counter(by_latency(models[:2], latency, rng)[0].model for _ in range(4000))
    share = firsts["openai/a"] / 4000
    assert abs(share - EXPLORE) < 0.015, share  # the slow model is still measured now and then
    explored = by_latency(models[:2], latency, _Always())
    assert names(explored) == ["a", "b"]  # exploration only reorders: both stay candidates


class _Always(random.Random):
    def random(self) -> float:
        return 0.0


def test_latency_is_an_ewma_that_follows_a_recovery() -> None:
    stats = Stats(alpha=0.5)
    stats.observe("m", 200)
    assert stats.latency_ms["m"] == 200
    stats.observe("m", 100)
    assert stats.latency_ms["m"] == 150
    for _ in range(10):
        stats.observe("m", 10)
    assert stats.latency_ms["m"] < 11


def test_in_flight_counts_are_released_however_an_attempt_ends() -> None:
    stats = Stats()
    with stats.busy("m"), stats.busy("m"):
        assert stats.in_flight == {"m": 2}
    with pytest.raises(RuntimeError), stats.busy("m"):
        assert stats.in_flight == {"m": 1}
        raise RuntimeError
    assert stats.in_flight == {}


def test_least_busy_puts_the_fewest_in_flight_first_ties_in_order(models: tuple[Provider, ...]) -> None:
    assert names(by_load(models, {"openai/a": 3, "openai/b": 1, "openai/d": 1})) == ["c", "b", "d", "a"]
    assert names(by_load(models, {})) == ["a", "b", "c", "d"]


def test_cheapest_ranks_by_blended_price_and_unpriced_last(models: tuple[Provider, ...]) -> None:
    assert names(by_cost(models)) == ["b", "d", "a", "c"]
    a = models[0].pricing
    assert a is not None and blended_price(a) == pytest.approx(0.75 * 3 + 0.25 * 15)


def test_rank_dispatches_on_prefer_and_none_keeps_the_configured_order(models: tuple[Provider, ...]) -> None:
    stats = Stats()
    stats.observe("openai/a", 100)
    stats.observe("openai/b", 1)
    stats.observe("openai/c", 50)
    stats.observe("openai/d", 10)
    with stats.busy("openai/a"):
        assert names(rank(models, "none", stats=stats)) == ["a", "b", "c", "d"]
        assert names(rank(models, "cheapest", stats=stats)) == ["b", "d", "a", "c"]
        assert names(rank(models, "least_busy", stats=stats)) == ["b", "c", "d", "a"]
        fastest = names(rank(models, "fastest", stats=stats, rng=random.Random(3)))
        assert sorted(fastest) == ["a", "b", "c", "d"]
        weighted = rank(models, "weighted", [0.0001, 0.0001, 1000, 0.0001], stats=stats, rng=random.Random(3))
        assert names(weighted)[0] == "c"


# -- config ------------------------------------------------------------------------------------


def test_selection_policy_is_parsed() -> None:
    config = cfg(route("[a, b]", "{prefer: weighted, weights: [3, 1]}")
                 + route("[a, b]", "{prefer: fastest}").replace("name: r", "name: s")
                 + route("[a]").replace("name: r", "name: t"))  # fmt: skip
    policies = {p.name: p.selection_policy for p in config.preferences}
    assert policies == {"r": SelectionPolicy("weighted", (3.0, 1.0)), "s": SelectionPolicy("fastest"),
                        "t": SelectionPolicy("none")}  # fmt: skip
    assert not [w for w in config.warnings if "selection_policy" in w]


SP = "routing_preferences[0].selection_policy"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{prefer: quickest}",
         f"{SP}.prefer: unknown value 'quickest' (expected one of none, cheapest, fastest, weighted, least_busy)"),
        ("{prefer: weighted, weights: [3, 1, 1]}",
         f"{SP}.weights: expected one weight per model of the route (2), got 3"),
        ("{prefer: weighted, weights: [3, 0]}", f"{SP}.weights[1]: expected a positive number, got 0"),
        ("{prefer: weighted, weights: [-1, 2]}", f"{SP}.weights[0]: expected a positive number, got -1"),
        ("{prefer: weighted, weights: [3, 'x']}", f"{SP}.weights[1]: expected a positive number, got 'x'"),
        ("{prefer: weighted}", f"{SP}.weights: required with prefer: weighted"),
        ("{prefer: fastest, weigths: [1, 2]}", f"{SP}.weigths: unknown key (did you mean 'weights'?)"),
        ("fastest", f"{SP}: expected a mapping {{prefer, weights}}, got str"),
    ],
)
def test_selection_policy_errors_name_the_yaml_path(policy: str, expected: str) -> None:
    found = problems(route("[a, b]", policy))
    assert any(p.startswith(expected) for p in found), found


def test_cheapest_without_any_pricing_is_a_warning() -> None:
    none_priced = cfg(route("[c]", "{prefer: cheapest}"))
    assert any(w.startswith("routing_preferences[0].selection_policy.prefer: cheapest, but no model of this route "
                            "has `pricing:`") for w in none_priced.warnings), none_priced.warnings  # fmt: skip
    some = cfg(route("[c, a]", "{prefer: cheapest}"))
    assert any("rank last: openai/c" in w for w in some.warnings), some.warnings
    priced = cfg(route("[a, b]", "{prefer: cheapest}"))
    assert not [w for w in priced.warnings if "selection_policy" in w]
    ignored = cfg(route("[a, b]", "{prefer: fastest, weights: [1, 2]}"))
    assert any("weights: ignored unless prefer is weighted" in w for w in ignored.warnings)


# -- the routing layer -------------------------------------------------------------------------


def _call(key: GatewayKey | None = None) -> Call:
    return Call(request_id="r1", protocol=ApiStyle.OPENAI, endpoint="chat", headers={}, key=key)


def test_routing_reorders_but_keeps_every_model_as_failover() -> None:
    config = cfg(route("[a, b, c]", "{prefer: cheapest}"))
    routing = Routing(None, config, None)
    call = _call()
    routing._apply(call, Decision("r", config.preferences[0].models, "matched", {}))
    assert names(call.candidates) == ["b", "a", "c"]
    assert call.provider is not None and call.provider.model == "openai/b"
    assert call.extra_headers[POLICY_HEADER] == "cheapest"
    plain = Routing(None, cfg(route("[a, b, c]")), None)
    unranked = _call()
    plain._apply(unranked, Decision("r", config.preferences[0].models, "matched", {}))
    assert names(unranked.candidates) == ["a", "b", "c"] and POLICY_HEADER not in unranked.extra_headers


def test_weights_stay_with_their_models_when_a_key_filters_the_route() -> None:
    config = cfg(route("[a, b, c]", "{prefer: weighted, weights: [1000000, 1, 1]}"))
    policy = config.preferences[0].selection_policy
    allowed = ranked(config.preferences[0].models, policy, lambda m: m.model != "openai/b")
    assert names(allowed) == ["a", "c"]
    rng_firsts = Counter(ranked(config.preferences[0].models, policy, lambda m: m.model != "openai/a")[0].model
                         for _ in range(200))  # fmt: skip
    assert set(rng_firsts) == {"openai/b", "openai/c"}  # b and c keep weight 1 each, not a's


# -- end to end: gateway process + mock upstream -----------------------------------------------

REVIEW = "Can you review this function and point out bugs?\n\ndef mean(xs):\n    return sum(xs) / len(xs) + 1"
POEM = "Write a short poem about autumn rain falling on a quiet harbour town."
MATH = "Prove that the square root of 2 is irrational, step by step."


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three routes on the mock, each with its own pair of models (so their observations stay
    apart), the slow model listed first so that configured order alone would send it everything."""
    folder: Path = tmp_path_factory.mktemp("selection")
    slow = "    headers: {x-mock-delay-ms: \"%d\"}\n"
    providers = "".join(
        f"  - model: mock/{name}\n    base_url: {mock}/v1\n" + (slow % delay if delay else "")
        for name, delay in (("w-heavy", 0), ("w-light", 0), ("f-slow", 200), ("f-quick", 0), ("l-slow", 300),
                            ("l-quick", 0))
    )
    config = write_config(folder, f"""\
version: v0.4.0
llm_providers:
{providers}  - model: mock/unrouted
    base_url: {mock}/v1
    default: true
routing_preferences:
  - name: code_review
    description: reviewing and analyzing existing code for bugs and improvements
    models: [w-heavy, w-light]
    selection_policy: {{prefer: weighted, weights: [3, 1]}}
  - name: creative_writing
    description: creative content generation, storytelling, and writing assistance
    models: [f-slow, f-quick]
    selection_policy: {{prefer: fastest}}
  - name: complex_reasoning
    description: deep analysis, mathematical problem solving, and logical reasoning
    models: [l-slow, l-quick]
    selection_policy: {{prefer: least_busy}}
""")
    proc, base = start_gateway(config, None, "--log-level", "warning", "--no-access-log")
    with proc:
        yield base


async def _served(gateway: str, text: str, count: int, concurrency: int) -> Counter[str]:
    """Sends `count` chat requests with `text`, `concurrency` at a time; counts the served models."""
    served: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)
    body: dict[str, Any] = {"model": "anything", "messages": [{"role": "user", "content": text}]}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits) as client:

        async def one() -> None:
            async with gate:
                response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            served[response.headers["x-junction-model"]] += 1

        await asyncio.gather(*(one() for _ in range(count)))
    return served


def served(gateway: str, text: str, count: int, concurrency: int = 1) -> Counter[str]:
    return asyncio.run(_served(gateway, text, count, concurrency))


def test_weighted_3_to_1_split_through_the_gateway(gateway: str, mock: str) -> None:
    httpx.delete(f"{mock}/_mock/requests")
    counts = served(gateway, REVIEW, 800, concurrency=8)
    assert sum(counts.values()) == 800 and set(counts) <= {"mock/w-heavy", "mock/w-light"}
    share = counts["mock/w-heavy"] / 800
    assert abs(share - 0.75) <= 0.07, counts  # 4.6 standard deviations at n = 800
    upstream = Counter(r["body"]["model"] for r in httpx.get(f"{mock}/_mock/requests").json())
    assert upstream == Counter({"w-heavy": counts["mock/w-heavy"], "w-light": counts["mock/w-light"]})
    response = httpx.post(f"{gateway}/v1/chat/completions", timeout=60,
                          json={"model": "anything", "messages": [{"role": "user", "content": REVIEW}]})  # fmt: skip
    assert response.headers["x-junction-route"] == "code_review"
    assert response.headers[POLICY_HEADER] == "weighted"


def test_fastest_sends_little_to_a_model_200ms_slower_after_warm_up(gateway: str) -> None:
    warm_up = served(gateway, POEM, 4)
    assert set(warm_up) == {"mock/f-slow", "mock/f-quick"}  # each measured once before ranking by latency
    counts = served(gateway, POEM, 40)
    assert counts["mock/f-slow"] < 0.2 * 40, counts
    assert counts["mock/f-quick"] > 0.8 * 40


def test_least_busy_moves_concurrent_load_away_from_the_slow_model(gateway: str) -> None:
    counts = served(gateway, MATH, 80, concurrency=8)
    assert sum(counts.values()) == 80
    # Configured order alone would give l-slow all 80; it only gets a request when it is no busier.
    assert counts["mock/l-slow"] < 0.25 * 80, counts
    assert counts["mock/l-quick"] > counts["mock/l-slow"]
