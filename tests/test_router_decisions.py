"""router/preferences.py in description-similarity mode: scoring, threshold, margin, stickiness, tool loops.

A deterministic bag-of-words encoder stands in for the model, so these tests are exact and fast.
"""

from __future__ import annotations

import asyncio
import re
import zlib

import numpy as np
import pytest

from router.preferences import (
    Decision,
    Preference,
    Router,
    RouterSettings,
    SessionState,
    SessionStore,
    description_texts,
)

DIM = 256


class WordEncoder:
    """Each word hashes to a dimension; vectors are normalised word counts."""

    def __init__(self) -> None:
        self.calls = 0

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(DIM, dtype=np.float32)
        for word in re.findall(r"[a-z]+", text.lower()):
            v[zlib.crc32(word.encode()) % DIM] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def encode_sync(self, texts):
        self.calls += 1
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, DIM), dtype=np.float32)

    async def encode(self, texts):
        return self.encode_sync(texts)

    def info(self):
        return {"model": "words"}


PREFS = [
    Preference("poetry", "poems", ("model-a",), ("write a poem about the sea", "compose a poem about rain")),
    Preference("maths", "maths", ("model-b",), ("solve the equation for x", "prove the theorem about primes")),
]
PLAIN = RouterSettings(use_head=False, threshold=0.3, margin=0.05, switch_threshold=0.3, switch_margin=0.1)


def body(*turns):
    msgs = []
    for i, t in enumerate(turns):
        if i:
            msgs.append({"role": "assistant", "content": "ok"})
        msgs.append({"role": "user", "content": t})
    return {"messages": msgs}


def make(settings=PLAIN, prefs=PREFS):
    return Router(prefs, WordEncoder(), settings)


def test_matches_the_best_route_and_reports_scores_and_models():
    d = make().decide_sync(body("write a poem about the moon"))
    assert isinstance(d, Decision)
    assert d.route == "poetry" and d.reason == "matched" and d.models == ("model-a",)
    assert set(d.scores) == {"poetry", "maths"} and d.scores["poetry"] > d.scores["maths"]
    assert d.margin is not None and d.margin > 0 and d.text == "write a poem about the moon"
    assert d.latency_ms >= 0 and d.as_dict()["models"] == ["model-a"]


def test_below_threshold_gives_no_route():
    d = make().decide_sync(body("zebra quantum lettuce"))
    assert d.route is None and d.reason == "below_threshold" and d.models == ()


def test_low_margin_gives_no_route():
    settings = RouterSettings(use_head=False, threshold=0.0, margin=0.5)
    d = make(settings).decide_sync(body("write a poem to solve the equation"))
    assert d.route is None and d.reason == "low_margin"


def test_short_follow_up_keeps_the_previous_route():
    r = make()
    first = r.decide_sync(body("write a poem about the sea"))
    follow = r.decide_sync(body("write a poem about the sea", "ok, shorter please"))
    assert first.route == "poetry"
    assert follow.route == "poetry" and follow.reason == "sticky" and follow.previous == "poetry"


def test_confident_topic_change_switches():
    r = make()
    r.decide_sync(body("write a poem about the sea"))
    d = r.decide_sync(body("write a poem about the sea", "now solve the equation for x and prove the theorem"))
    assert d.route == "maths" and d.reason == "matched" and d.previous == "poetry"


def test_stickiness_can_be_switched_off():
    r = make(RouterSettings(use_head=False, threshold=0.3, margin=0.05, sticky=False))
    r.decide_sync(body("write a poem about the sea"))
    d = r.decide_sync(body("write a poem about the sea", "ok, shorter please"))
    assert d.route is None and d.reason == "below_threshold"


def test_unknown_session_replays_earlier_turns():
    r = make()  # fresh router: no session state, the history in the body seeds the previous route
    d = r.decide_sync(body("write a poem about the sea", "ok, shorter please"))
    assert d.route == "poetry" and d.reason == "sticky"


def test_tool_loop_reuses_the_decision_without_encoding():
    r = make()
    conv = {"messages": [{"role": "user", "content": [{"type": "text", "text": "solve the equation for x"}]}]}
    assert r.decide_sync(conv).route == "maths"
    calls = r.encoder.calls
    conv["messages"] += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]},
    ]
    d = r.decide_sync(conv)
    assert d.route == "maths" and d.reason == "tool_loop" and r.encoder.calls == calls


def test_tool_loop_without_session_decides_on_the_earlier_text():
    r = make()
    conv = {"messages": [
        {"role": "user", "content": "write a poem about the sea"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "..."}]},
    ]}  # fmt: skip
    d = r.decide_sync(conv)
    assert d.route == "poetry" and d.reason == "tool_loop"


def test_no_text_turns():
    r = make()
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
    d = r.decide_sync({"messages": [{"role": "user", "content": [img]}]})
    assert d.route is None and d.reason == "no_text"
    conv = {"messages": [{"role": "user", "content": "write a poem about the sea"}, {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": [img]}]}  # fmt: skip
    r.decide_sync({"messages": conv["messages"][:1]})
    d = r.decide_sync(conv)
    assert d.route == "poetry" and d.reason == "no_text"


def test_session_header_separates_conversations():
    r = make()
    r.decide_sync(body("write a poem about the sea"), session_header="one")
    d = r.decide_sync(body("ok, shorter please"), session_header="one")
    assert d.route == "poetry" and d.reason == "sticky"
    d = r.decide_sync(body("ok, shorter please"), session_header="two")
    assert d.route is None


def test_no_preferences_never_loads_a_model():
    r = Router([], None)
    assert r.encoder is None
    d = r.decide_sync(body("anything"))
    assert d.route is None and d.reason == "no_preferences"
    assert asyncio.run(r.decide(body("anything"))).reason == "no_preferences"


def test_async_and_sync_agree():
    a, b = make(), make()
    conv = body("solve the equation for x")
    assert asyncio.run(a.decide(conv)).route == b.decide_sync(conv).route == "maths"


def test_preferences_from_mappings_and_objects():
    class Obj:
        name = "poetry"
        description = "poems"
        models = ("m",)
        examples = ("write a poem",)

    r = Router([Obj(), {"name": "maths", "description": "maths", "models": ["n"], "examples": None}], WordEncoder(), PLAIN)
    assert [p.name for p in r.preferences] == ["poetry", "maths"]
    assert r.preferences[1].examples == ()
    with pytest.raises(ValueError):
        Router([{"name": "x", "description": ""}, {"name": "x", "description": ""}], WordEncoder())


def test_index_is_built_once_and_cached_per_config():
    enc = WordEncoder()
    first = Router(PREFS, enc, PLAIN)
    first.decide_sync(body("write a poem"))
    calls = enc.calls
    second = Router(PREFS, enc, PLAIN)  # same config content: the index is reused
    second.prepare_sync()
    assert enc.calls == calls and second.index is first.index
    changed = Router([*PREFS[:1], Preference("maths", "mathematics", (), ())], enc, PLAIN)
    changed.prepare_sync()
    assert changed.index is not first.index


def test_description_phrases():
    texts = description_texts("banking: balances, transfers and paying bills")
    assert texts[0] == "banking: balances, transfers and paying bills"
    assert "balances" in texts and "banking: paying bills" in texts
    whole = "reviewing and analyzing existing code for bugs and improvements"
    assert description_texts(whole) == [whole]  # one clause: "and" joins parts of one phrase


def test_session_store_is_bounded_and_expires():
    store = SessionStore(max_entries=2, ttl_s=10)
    store.put("a", SessionState("x", None, "f"), now=0)
    store.put("b", SessionState("y", None, "f"), now=1)
    store.put("c", SessionState("z", None, "f"), now=2)
    assert len(store) == 2 and store.get("a", now=3) is None
    assert store.get("b", now=5).route == "y"
    assert store.get("b", now=100) is None
