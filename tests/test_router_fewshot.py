"""The route classifier fitted on a config's examples (router/fewshot.py) and how the router uses it."""

from __future__ import annotations

import numpy as np
import pytest

from router import fewshot
from router.preferences import Router, RouterSettings
from router.taxonomy import head_available


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8, dtype=np.float32)
    X = np.concatenate([c + 0.15 * rng.standard_normal((20, 8)) for c in centres]).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.repeat(np.arange(3), 20)


def test_the_classifier_learns_its_routes_and_gives_log_probabilities() -> None:
    X, y = _clusters()
    clf = fewshot.fit(X, y, 3)
    lp = clf.log_probs(X)
    assert lp.shape == (60, 3) and (lp.argmax(axis=1) == y).all()
    assert np.allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-5)
    held_out, gold = _clusters(seed=1)
    assert (clf.log_probs(held_out).argmax(axis=1) == gold).mean() >= 0.95
    again = fewshot.fit(X, y, 3)
    assert np.array_equal(clf.W, again.W) and np.array_equal(clf.b, again.b)  # deterministic


def test_a_stronger_penalty_gives_softer_probabilities() -> None:
    X, y = _clusters()
    sharp = np.exp(fewshot.fit(X, y, 3, l2=1e-4).log_probs(X)).max(axis=1).mean()
    soft = np.exp(fewshot.fit(X, y, 3, l2=1e-1).log_probs(X)).max(axis=1).mean()
    assert sharp > soft > 1 / 3


PREFS = [
    {"name": "assistant_meta", "description": "questions about the assistant itself: its name, who made it, its settings",
     "examples": ["what do people call you", "who built you", "can i change what you call me", "are you a robot"]},
    {"name": "small_talk", "description": "casual chat: greetings, how are you, jokes, compliments",
     "examples": ["hi there", "how is your day going", "tell me a joke", "you are funny"]},
    {"name": "banking", "description": "banking: balances, transfers, card payments",
     "examples": ["move 50 dollars to savings", "what is my checking balance"]},
]  # fmt: skip


@pytest.mark.skipif(not head_available(), reason="router/head.npz is not installed")
def test_routes_with_examples_add_the_classifier_to_their_similarity() -> None:
    router = Router(PREFS)
    index = router.prepare_sync()
    assert index is not None and index.classifier is not None and index.example_weight == pytest.approx(0.05)
    assert router.describe()["example_classifier"] is True
    q = router.query_encoder().encode_sync(["who made you?"])
    plain = Router(PREFS, settings=RouterSettings(example_weight=0.0))
    base = plain.prepare_sync()
    assert base is not None and base.classifier is None and plain.describe()["example_classifier"] is False
    # the score is the similarity plus weight x log p(route): nothing else changes
    expected = base.similarity(q) + 0.05 * index.classifier.log_probs(q)
    assert np.allclose(index.similarity(q), expected, atol=1e-6)
    assert router.decide_sync({"messages": [{"role": "user", "content": "who made you?"}]}).route == "assistant_meta"


@pytest.mark.skipif(not head_available(), reason="router/head.npz is not installed")
def test_description_only_routes_get_no_classifier() -> None:
    prefs = [{k: v for k, v in p.items() if k != "examples"} for p in PREFS]
    index = Router(prefs).prepare_sync()
    assert index is not None and index.classifier is None


def test_the_bar_to_take_over_a_session_rises_with_the_examples() -> None:
    from router.preferences import Preference, auto_switch_threshold

    def prefs(k: int) -> list[Preference]:
        return [Preference(f"r{i}", "d", (), tuple(f"example {j}" for j in range(k))) for i in range(3)]

    assert auto_switch_threshold(prefs(0)) == pytest.approx(0.30)
    assert auto_switch_threshold(prefs(5)) == pytest.approx(0.40, abs=0.02)
    assert auto_switch_threshold(prefs(20)) == pytest.approx(0.50)
    assert auto_switch_threshold(prefs(200)) == pytest.approx(0.50)  # capped where the fit ended
    assert auto_switch_threshold([]) == pytest.approx(0.30)


@pytest.mark.skipif(not head_available(), reason="router/head.npz is not installed")
def test_a_session_on_routes_with_examples_needs_the_higher_bar_to_switch() -> None:
    from router.preferences import Assessment, judge

    index = Router(PREFS).prepare_sync()
    assert index is not None and index.switch_at == pytest.approx(0.30 + 0.20 * np.log1p(4) / np.log(21))
    s = RouterSettings()
    # a new route at 0.40, well clear of the session's route and the runner-up: enough without
    # examples (bar 0.30), not with these four per route (bar 0.41)
    sims = np.array([0.05, 0.40, 0.10], dtype=np.float32)
    kept = judge(index, Assessment(sims), s, previous="assistant_meta", known=True)
    assert (kept.route, kept.reason) == ("assistant_meta", "sticky")
    moved = judge(index, Assessment(sims), RouterSettings(switch_threshold=0.30), previous="assistant_meta", known=True)
    assert moved.route == "small_talk"


@pytest.mark.skipif(not head_available(), reason="router/head.npz is not installed")
def test_explain_shows_what_the_examples_taught() -> None:
    from gateway.cli import explanation_text

    explained = Router(PREFS).explain({"messages": [{"role": "user", "content": "who made you?"}]})
    probs = explained["example_classifier"]["probability"]
    assert list(probs)[0] == "assistant_meta" and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    text = explanation_text(explained)
    assert "classifier fitted on the routes' examples" in text and "assistant_meta" in text
    plain = Router([{k: v for k, v in p.items() if k != "examples"} for p in PREFS])
    assert "example_classifier" not in plain.explain({"messages": [{"role": "user", "content": "who made you?"}]})
