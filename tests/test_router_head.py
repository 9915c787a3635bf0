"""The task head's decision rules as pure functions: route mapping, route probabilities, topic-switch
markers, follow-ups and stickiness (synthetic vectors and probabilities, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from router.preferences import Assessment, RouteIndex, RouterSettings, judge
from router.switch import find_switch
from router.taxonomy import FOLLOWUP, Head, map_routes, route_probs

CLASSES = ("review", "generate", "maths", FOLLOWUP)


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_each_class_goes_to_the_route_it_matches_best_above_the_threshold():
    e = np.eye(4, dtype=np.float32)
    routes = ["code_review", "reasoning"]
    route_vecs = [e[[0]], e[[2]]]  # one description phrase each
    class_vecs = [e[[0]], e[[1]], unit(0.1, 0, 1, 0)[None, :], e[[3]]]
    m = map_routes(routes, route_vecs, CLASSES, class_vecs, np.stack([c[0] for c in class_vecs]), threshold=0.5)
    assert m.claims == {"code_review": ("review",), "reasoning": ("maths",)}
    assert m.owner == (0, -1, 1, -1)  # "generate" matches nothing: no route; follow-ups never map
    assert m.fallback_routes(routes) == []


def test_examples_claim_the_classes_they_fall_into():
    e = np.eye(4, dtype=np.float32)
    routes = ["coding", "other"]
    probs = [np.array([[0.1, 0.8, 0.1, 0.0], [0.2, 0.7, 0.1, 0.0]]), None]
    m = map_routes(routes, [e[[0]], e[[3]]], CLASSES, [e[[i]] for i in range(4)], e, threshold=0.9,
                   example_probs=probs, example_share=0.25)  # fmt: skip
    assert m.claims["coding"] == ("review", "generate") and m.by_examples == {"coding": ("generate",)}
    assert m.fallback_routes(routes) == ["other"]


def test_route_probabilities_sum_claimed_classes_without_the_follow_up_mass():
    routes, none, follow = route_probs(np.array([0.3, 0.1, 0.2, 0.4]), (0, -1, 1, -1), 2, followup=3)
    assert follow == pytest.approx(0.4)
    assert routes == pytest.approx([0.5, 2 / 6]) and none == pytest.approx(1 / 6)


def _index() -> RouteIndex:
    head = Head(CLASSES, ("test",), 64, np.zeros((4, 4), np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32),
                np.eye(4, dtype=np.float32), {})  # fmt: skip
    return RouteIndex(["code_review", "reasoning"], np.eye(4, dtype=np.float32)[:2], np.array([0, 1]), 1, head,
                      None, np.array([0, -1, 1, -1]))  # fmt: skip


def _seen(review: float, generate: float, maths: float, follow: float) -> Assessment:
    index = _index()
    probs = np.array([review, generate, maths, follow])
    routes, none, fp = route_probs(probs, index.class_owner, 2, 3)  # type: ignore[arg-type]
    return Assessment(np.zeros(2, np.float32), probs, routes, none, fp, index._none_best(probs, fp))


S = RouterSettings(route_threshold=0.35, followup_threshold=0.5, switch_probability=0.6)


def test_fresh_verdicts():
    index = _index()
    v = judge(index, _seen(0.7, 0.2, 0.1, 0.0), S)
    assert v.route == "code_review" and v.reason == "matched" and v.runner_up == "none"
    v = judge(index, _seen(0.2, 0.7, 0.1, 0.0), S)
    assert v.route is None and v.reason == "unrouted" and v.unrouted == "generate"


def test_a_follow_up_keeps_the_sessions_route_even_when_it_looks_like_something_else():
    index = _index()
    v = judge(index, _seen(0.05, 0.3, 0.05, 0.6), S, previous="reasoning", known=True)
    assert v.route == "reasoning" and v.reason == "followup"
    v = judge(index, _seen(0.05, 0.3, 0.05, 0.6), S, previous=None, known=True)
    assert v.route is None and v.reason == "followup"


def test_a_weak_new_verdict_sticks_and_a_confident_one_moves():
    index = _index()
    weak = _seen(0.3, 0.45, 0.25, 0.0)  # no route at 0.45 < 0.6
    assert judge(index, weak, S, previous="code_review", known=True).route == "code_review"
    assert judge(index, weak, S, previous="code_review", known=True).reason == "sticky"
    strong = _seen(0.05, 0.1, 0.85, 0.0)
    v = judge(index, strong, S, previous="code_review", known=True)
    assert v.route == "reasoning" and v.reason == "matched"


def test_an_explicit_switch_decides_afresh_whatever_the_confidence():
    index = _index()
    weak = _seen(0.3, 0.45, 0.25, 0.0)
    v = judge(index, weak, S, previous="code_review", known=True, switch=True)
    assert v.route is None and v.reason == "switched"
    assert judge(index, weak, RouterSettings(sticky=False), previous="code_review", known=True).reason == "unrouted"


@pytest.mark.parametrize(
    ("text", "marker", "rest"),
    [
        ("nice, thanks. unrelated question: how do I undo a git add?", "unrelated question", "how do I undo a git add?"),
        ("ok switching gears - write a limerick about kubernetes", "switching gears", "write a limerick about kubernetes"),
        ("好的。换个话题，证明一下根号3是无理数", "换个话题", "证明一下根号3是无理数"),
        ("ありがとう！ところで、この関数の計算量は？", "ところで", "この関数の計算量は？"),
        ("고마워요. 다른 질문인데, 이 코드 리뷰해줄래?", "다른 질문", "인데, 이 코드 리뷰해줄래?"),
        ("Danke! Andere Frage: wie viele Primzahlen gibt es unter 100?", "Andere Frage", "wie viele Primzahlen gibt es unter 100?"),
        ("Perfecto. Cambiando de tema, escribe un poema sobre el mar", "Cambiando de tema", "escribe un poema sobre el mar"),
        ("merci ! autre question : que fait ce script ?", "autre question", "que fait ce script ?"),
        ("спасибо. Кстати, напиши стих про осень", "Кстати", "напиши стих про осень"),
        ("valeu! mudando de assunto, revisa esse código pra mim", "mudando de assunto", "revisa esse código pra mim"),
    ],
)
def test_switch_markers_in_many_languages(text: str, marker: str, rest: str):
    found = find_switch(text)
    assert found is not None and found.marker == marker and found.rest == rest


@pytest.mark.parametrize(
    "text",
    [
        "make it shorter",
        "what about the unrelated tests in the fixtures folder?",  # the word, but not opening the turn
        "另外再加上导演和上映年份",  # "also": a continuation
        "btw",  # a marker with no request after it
        "and for n=5?",
    ],
)
def test_no_switch(text: str):
    assert find_switch(text) is None
