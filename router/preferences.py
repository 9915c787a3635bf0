"""Route by preference: the trained task head, route mapping, stickiness and the decision record.

Two ways to score a request against the configured `routing_preferences`:

* **Task head** (the default, `use_head`): the trained head of router/taxonomy.py gives the request's
  probability for each task class (code_review, code_generation, math_problem, creative_writing,
  followup, ...). Each route claims the classes its description (and `examples:`) matches; a route's
  probability is the sum of its classes', and classes no route claims stand for "no route". So
  "write a new function" falls to no route when the only coding route is about reviewing code, and
  asking for the bug in a pasted snippet is code review whatever words it uses.
* **Description similarity**: a route that claims no class (a topic such as "banking" or "travel",
  outside the task taxonomy), or every route when the head is off or the encoder is not the one the
  head was trained on, is scored by the mean of its `top_n` highest cosine similarities between the
  request and the route's description, description phrases and examples (cosines of MiniLM and the
  head's encoder mixed, `similarity_mix`), plus `example_weight` x the log-probability a classifier
  fitted on those texts gives the route when routes have examples (router/fewshot.py).

Stickiness: a turn without genuine user text (the agent's tool loop) keeps the session's route. A
turn that opens with an explicit topic switch ("unrelated question: ...", "换个话题", router/switch.py)
is decided afresh on the text after the marker. A follow-up (the head's `followup` class: "make it
shorter", "and for n=5?") keeps the route. Any other turn moves only when the new verdict is confident
(`switch_probability`; in similarity mode `switch_threshold`, `switch_margin` and `switch_lead`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from router import fewshot
from router.encoder import MINILM, CompositeEncoder, Encoder, build_encoder
from router.fewshot import RouteClassifier
from router.switch import find_switch
from router.taxonomy import (FOLLOWUP, Head, Mapping as ClassMapping, head_available, load_head, load_taxonomy,
                             map_routes, route_probs)  # fmt: skip
from router.turns import Protocol, Turn, latest_turn, session_key

log = logging.getLogger("junction.router")

REASONS = ("matched", "similarity", "below_threshold", "low_margin", "unrouted", "sticky", "followup", "switched",
           "tool_loop", "no_text", "no_preferences")  # fmt: skip


@dataclass(frozen=True)
class Preference:
    name: str
    description: str
    models: tuple[Any, ...] = ()
    examples: tuple[str, ...] = ()

    @classmethod
    def coerce(cls, item: Any) -> "Preference":
        """From a `Preference`, a mapping, or any object with name/description/models/examples."""
        if isinstance(item, Preference):
            return item
        get = item.get if isinstance(item, Mapping) else (lambda key, default=None: getattr(item, key, default))
        examples = get("examples", ()) or ()
        if isinstance(examples, str):
            examples = (examples,)
        return cls(str(get("name")), str(get("description", "") or ""), tuple(get("models", ()) or ()),
                   tuple(str(e) for e in examples if str(e).strip()))  # fmt: skip


@dataclass(frozen=True)
class RouterSettings:
    """Tuning knobs; the defaults were chosen on development data only (see router/README.md)."""

    # Task head
    use_head: bool = True  # route through the trained task head when the encoder matches it
    head: str | None = None  # another head file (router/training/train.py --out)
    route_threshold: float = 0.25  # probability the best route needs (and it must beat every unclaimed class)
    map_threshold: float = 0.50  # class <-> route description affinity for a route to claim a class
    example_share: float = 0.25  # share of a route's examples in a class for the route to claim it
    followup_threshold: float = 0.5  # follow-up probability that keeps the session's route
    switch_probability: float = 0.6  # probability a new verdict needs to leave the session's route
    switch_markers: bool = True  # "unrelated question: ..." decides the rest of the turn afresh
    # Description similarity (routes outside the taxonomy, or the head off)
    similarity_encoder: str = "both"  # score such configs with "minilm" (all-MiniLM-L6-v2), "head" (the head's encoder) or "both"
    similarity_mix: float = 0.4  # the head encoder's share of the cosine with "both"
    example_weight: float = 0.05  # weight of the classifier fitted on routes' examples (0: similarity alone)
    threshold: float = 0.20  # minimum route score (top-n mean cosine) for a match
    margin: float = 0.0  # minimum lead of the best route over the runner-up
    top_n: int = 3  # similarities averaged per route
    switch_threshold: float | None = None  # score a new route needs to take over (None: by the routes' examples, 0.30-0.50)
    switch_margin: float = 0.20  # lead over the current route's score needed to take over
    switch_lead: float = 0.04  # ...and over the runner-up (an unambiguous winner)
    # Sessions and text
    sticky: bool = True  # keep a session's route through follow-ups and tool loops
    history_turns: int = 8  # earlier user turns replayed when a session is unknown
    max_chars: int = 2000  # character budget of the embedded text (head + tail)
    session_ttl_s: float = 3600.0
    session_max_entries: int = 10000

    def with_overrides(self, **values: Any) -> "RouterSettings":
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class Decision:
    """One routing decision and why it was taken."""

    route: str | None
    models: tuple[Any, ...]
    reason: str
    scores: dict[str, float]  # per route: probability (task head) or similarity
    score: float | None = None  # the best route's score
    runner_up: str | None = None
    margin: float | None = None  # best minus runner-up
    unrouted: str | None = None  # the task class no route claims that won, when there is no route
    previous: str | None = None  # the session's route before this turn
    text: str = ""
    session: str = ""
    latency_ms: float = 0.0
    tasks: dict[str, float] = field(default_factory=dict)  # most likely task classes (task head)
    switch: str | None = None  # the topic-switch marker that opened the turn
    mode: str = ""  # "head" or "similarity"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["models"] = [getattr(m, "model", m) for m in self.models]
        return out


# ---------------------------------------------------------------------------------------------
# Route texts


_TOPIC = re.compile(r"^\s*([^:\-–—]{2,60}?)\s*(?::|\s[-–—]\s)\s*(.+)$", re.S)
_LIST_SPLIT = re.compile(r"[,;]|\(|\)|\.\s")
_AND_SPLIT = re.compile(r"\s+(?:and|or|and/or|as well as)\s+")


def humanise(name: str) -> str:
    return re.sub(r"[_\-./]+", " ", name).strip()


def description_texts(description: str) -> list[str]:
    """The description, its phrases and topic-prefixed phrases (deduplicated, in order)."""
    description = " ".join(description.split())
    if not description:
        return []
    topic, body = "", description
    match = _TOPIC.match(description)
    if match and len(match.group(1).split()) <= 5:
        topic, body = match.group(1).strip(), match.group(2)
    phrases: list[str] = []
    parts = [p.strip(" .") for p in _LIST_SPLIT.split(body) if p.strip(" .")]
    for part in parts:
        part = re.sub(r"^(?:and|or)\s+", "", part)
        pieces = _AND_SPLIT.split(part)
        # Inside a comma list "x and y" is one more list item; in a single clause it is split only
        # when both sides are phrases ("reviewing and analyzing code" stays whole).
        if len(pieces) > 1 and (len(parts) > 1 or all(len(p.split()) >= 2 for p in pieces)):
            phrases.extend(pieces)
        else:
            phrases.append(part)
    phrases = [p.strip(" .") for p in phrases if len(p.strip(" .")) > 2]
    texts = [description]
    if len(phrases) > 1:
        texts += phrases
        if topic:
            texts += [f"{topic}: {p}" for p in phrases]
    elif topic:
        texts.append(topic)
    return list(dict.fromkeys(texts))


def _descriptor_texts(p: Preference) -> list[str]:
    """The description side of a route: description, its phrases and the humanised name."""
    texts = description_texts(p.description)
    name = humanise(p.name)
    if name and name.lower() not in (t.lower() for t in texts):
        texts.append(name)
    return texts


def _route_texts(prefs: Sequence[Preference]) -> list[list[str]]:
    return [list(dict.fromkeys(_descriptor_texts(p) + [e for e in p.examples if e.strip()])) for p in prefs]


# ---------------------------------------------------------------------------------------------
# The index


@dataclass
class RouteIndex:
    """Everything a decision needs that depends only on the config: route vectors and the mapping of
    routes onto the task head's classes."""

    routes: list[str]
    vectors: np.ndarray  # (n_vectors, dim): every route's description side and examples
    owner: np.ndarray  # (n_vectors,) route index
    top_n: int
    head: Head | None = None  # None: every route is decided by similarity
    mapping: ClassMapping | None = None
    class_owner: np.ndarray | None = None  # (n_classes,) route index or -1
    fallback: tuple[int, ...] = ()  # routes decided by similarity
    counts: dict[str, int] = field(default_factory=dict)
    query_encoder: Any = None  # the encoder whose space `vectors` are in, when not the router's own
    classifier: RouteClassifier | None = None  # fitted on the route texts when routes have examples
    switch_at: float = 0.30  # similarity a new route needs to take over a session (`auto_switch_threshold`)
    example_weight: float = 0.0

    def __post_init__(self) -> None:
        order = np.argsort(self.owner, kind="stable")
        self.vectors = np.ascontiguousarray(self.vectors[order], dtype=np.float32)
        self.owner = self.owner[order]
        bounds = np.searchsorted(self.owner, np.arange(len(self.routes) + 1))
        self.spans = [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(self.routes))]
        self.claimed = tuple(i for i in range(len(self.routes)) if i not in self.fallback) if self.head else ()
        self.followup = self.head.classes.index(FOLLOWUP) if self.head and FOLLOWUP in self.head.classes else None
        # the classes that stand for "no route" (unclaimed, not the follow-up class), fixed per config
        self.none_mask = np.zeros(0, dtype=bool)
        if self.class_owner is not None:
            self.none_mask = np.asarray(self.class_owner) == -1
            if self.followup is not None:
                self.none_mask[self.followup] = False

    @property
    def n_routes(self) -> int:
        return len(self.routes)

    def similarity(self, queries: np.ndarray) -> np.ndarray:
        """(n_queries, n_routes): mean of the top-n cosine similarities per route."""
        sims = np.atleast_2d(queries) @ self.vectors.T
        out = np.empty((sims.shape[0], len(self.routes)), dtype=np.float32)
        for j, (lo, hi) in enumerate(self.spans):
            block = sims[:, lo:hi]
            n = min(self.top_n, hi - lo)
            if n == 1:
                out[:, j] = block.max(axis=1)
            else:
                out[:, j] = np.partition(block, hi - lo - n, axis=1)[:, hi - lo - n :].mean(axis=1)
        if self.classifier is not None:
            out += self.example_weight * self.classifier.log_probs(queries)
        return out

    def _none_best(self, probs: np.ndarray, follow: float) -> float:
        mask = self.none_mask
        return float(probs[mask].max() / max(1.0 - follow, 1e-9)) if mask.any() else 0.0

    def assess(self, queries: np.ndarray, texts: Sequence[str]) -> list["Assessment"]:
        """What the head and the route vectors say about each query (its vector and its text)."""
        sims = self.similarity(queries)
        if self.head is None or self.class_owner is None:
            return [Assessment(sims[i]) for i in range(len(sims))]
        probs = self.head.probs(queries, texts)
        out = []
        for i in range(len(probs)):
            routes, none, follow = route_probs(probs[i], self.class_owner, self.n_routes, self.followup)
            out.append(Assessment(sims[i], probs[i], routes, none, follow, self._none_best(probs[i], follow)))
        return out


@dataclass(frozen=True)
class Assessment:
    """One text's scores: route similarities, and with the head its class and route probabilities."""

    sims: np.ndarray  # (n_routes,)
    probs: np.ndarray | None = None  # (n_classes,)
    route_p: np.ndarray | None = None  # (n_routes,) renormalised without the follow-up class
    none_p: float = 0.0  # all unclaimed classes together
    follow_p: float = 0.0
    none_best: float = 0.0  # the most likely unclaimed class alone


def _fingerprint(prefs: Sequence[Preference], settings: RouterSettings, head: Head | None) -> str:
    h = hashlib.sha256()
    for p in prefs:
        h.update(repr((p.name, p.description, p.examples)).encode())
    h.update(repr((settings.top_n, settings.use_head, settings.head, settings.map_threshold, settings.example_share,
                   settings.similarity_encoder, settings.similarity_mix, settings.example_weight)).encode())  # fmt: skip
    if head is not None:
        h.update(repr((head.meta.get("data_hash"), head.classes)).encode())
    return h.hexdigest()


_INDEXES: OrderedDict[tuple[int, str], RouteIndex] = OrderedDict()
_INDEX_LOCK = threading.Lock()


def _class_texts(head: Head) -> dict[str, list[str]]:
    known = {c.name: c.description for c in load_taxonomy()}
    return {name: description_texts(known.get(name, humanise(name))) for name in head.classes}


def _all_texts(route_texts: list[list[str]], head: Head | None) -> list[str]:
    texts = [t for group in route_texts for t in group]
    if head is not None:
        texts += [t for group in _class_texts(head).values() for t in group]
    return list(dict.fromkeys(texts))


def auto_switch_threshold(prefs: Sequence[Preference]) -> float:
    """The similarity a new route needs to take over a session. A route's score is a cosine to its
    nearest texts, and examples (written like user turns) sit closer to user turns than one-line
    descriptions: the more examples, the higher every route scores, and the higher the bar must be.
    Fitted on 300 SGD train dialogues: best at 0.30 with no examples, 0.40 with 5 per route, 0.50 with
    20 (the median count per route decides; capped there)."""
    k = float(np.median([len(p.examples) for p in prefs])) if prefs else 0.0
    return 0.30 + 0.20 * min(1.0, math.log1p(k) / math.log(21.0))


def _assemble(prefs: Sequence[Preference], settings: RouterSettings, route_texts: list[list[str]],
              head: Head | None, vec: dict[str, np.ndarray], mapping: ClassMapping | None = None) -> RouteIndex:  # fmt: skip
    """Pure part of the index build, given a vector for every text involved (`mapping`: kept for
    `describe()` when a head-less index replaces one whose routes did not all map)."""
    vectors: list[np.ndarray] = []
    owner: list[int] = []
    for i, texts in enumerate(route_texts):
        vectors += [vec[t] for t in texts]
        owner += [i] * len(texts)
    counts = {p.name: len(t) for p, t in zip(prefs, route_texts)}
    names = [p.name for p in prefs]
    if head is None:
        return RouteIndex(names, np.stack(vectors), np.array(owner), max(1, settings.top_n), mapping=mapping,
                          fallback=tuple(range(len(prefs))), counts=counts, switch_at=auto_switch_threshold(prefs))  # fmt: skip
    class_texts = _class_texts(head)
    desc_vecs = [np.stack([vec[t] for t in _descriptor_texts(p)]) for p in prefs]
    class_vecs = [np.stack([vec[t] for t in class_texts[c]]) for c in head.classes]
    example_probs = [head.probs(np.stack([vec[e] for e in p.examples]), p.examples) if p.examples else None for p in prefs]
    families = {c.name: c.family for c in load_taxonomy() if c.family}
    mapping = map_routes(names, desc_vecs, head.classes, class_vecs, head.centroids, settings.map_threshold,
                         example_probs, settings.example_share, families)  # fmt: skip
    fallback = tuple(i for i, name in enumerate(names) if not mapping.claims.get(name))
    if fallback:
        # Mixing the head's probabilities with similarity scores measured worse on topic-style configs
        # (CLINC150, SGD) than similarity alone: unless every route maps onto the taxonomy, all are
        # decided by similarity (follow-ups and topic switches still use the head).
        fallback = tuple(range(len(prefs)))
    return RouteIndex(names, np.stack(vectors), np.array(owner), max(1, settings.top_n), head, mapping,
                      np.array(mapping.owner), fallback, counts, switch_at=auto_switch_threshold(prefs))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Sessions


@dataclass
class SessionState:
    route: str | None  # the route after the latest genuine turn
    before: str | None  # the route before that turn
    fingerprint: str  # which genuine turn `route` belongs to
    touched: float = 0.0


class SessionStore:
    """Bounded in-memory LRU of session states with a time-to-live."""

    def __init__(self, max_entries: int = 10000, ttl_s: float = 3600.0) -> None:
        self.max_entries = max(1, max_entries)
        self.ttl_s = ttl_s
        self._data: OrderedDict[str, SessionState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, now: float | None = None) -> SessionState | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._data.get(key)
            if state is None:
                return None
            if self.ttl_s > 0 and now - state.touched > self.ttl_s:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return state

    def put(self, key: str, state: SessionState, now: float | None = None) -> None:
        state.touched = time.monotonic() if now is None else now
        with self._lock:
            self._data[key] = state
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# ---------------------------------------------------------------------------------------------
# Deciding


@dataclass(frozen=True)
class Verdict:
    """The pure outcome of one turn's scores (no models, no timing)."""

    route: str | None
    reason: str
    score: float | None  # the winner's score: route probability, no-route probability or similarity
    runner_up: str | None = None
    margin: float | None = None
    unrouted: str | None = None  # the task class no route claims that stood for "no route"
    confidence: float = 0.0  # what a new verdict must show to leave a session's route


def _similarity_verdict(index: RouteIndex, sims: np.ndarray, s: RouterSettings, among: Sequence[int]) -> Verdict:
    order = sorted(among, key=lambda i: -float(sims[i]))
    best = order[0]
    top = float(sims[best])
    runner = order[1] if len(order) > 1 else None
    lead = top - float(sims[runner]) if runner is not None else top
    name = index.routes[best]
    runner_name = index.routes[runner] if runner is not None else None
    if top < s.threshold:
        return Verdict(None, "below_threshold", top, runner_name, lead)
    if lead < s.margin:
        return Verdict(None, "low_margin", top, runner_name, lead)
    reason = "matched" if index.head is None and index.mapping is None else "similarity"  # similarity by choice, or by fallback
    return Verdict(name, reason, top, runner_name, lead, confidence=top)


def fresh_verdict(index: RouteIndex, a: Assessment, s: RouterSettings) -> Verdict:
    """The route for this text alone."""
    if index.head is None or a.route_p is None or a.probs is None:
        return _similarity_verdict(index, a.sims, s, range(index.n_routes))
    runner_name, runner_p = "none", a.none_p
    if index.claimed:
        best = max(index.claimed, key=lambda i: float(a.route_p[i]))  # type: ignore[index]
        p = float(a.route_p[best])
        others = [(index.routes[i], float(a.route_p[i])) for i in index.claimed if i != best] + [("none", a.none_p)]
        runner_name, runner_p = max(others, key=lambda item: item[1])
        # The route competes with the most likely task class no route claims (not with all of them
        # summed: "no route" is many different tasks, and a request is one of them or not).
        if p >= s.route_threshold and p > a.none_best:
            return Verdict(index.routes[best], "matched", p, runner_name, p - runner_p, confidence=p)
    if index.fallback:
        v = _similarity_verdict(index, a.sims, s, index.fallback)
        if v.route is not None:
            return v
    unclaimed = np.flatnonzero(index.none_mask).tolist()
    top_class = index.head.classes[max(unclaimed, key=lambda c: float(a.probs[c]))] if unclaimed else None  # type: ignore[index]
    reason = "unrouted" if index.claimed and a.none_best >= max((float(a.route_p[i]) for i in index.claimed), default=0.0) else "below_threshold"
    return Verdict(None, reason, a.none_p, runner_name, a.none_p - runner_p, top_class, confidence=a.none_p)


def judge(index: RouteIndex, a: Assessment, s: RouterSettings, previous: str | None = None,
          known: bool = False, switch: bool = False) -> Verdict:  # fmt: skip
    """The route for this turn given the session's route before it (`known`: there was one)."""
    v = fresh_verdict(index, a, s)
    if not (s.sticky and known):
        return v
    if switch:  # the user said the topic changes: the new request decides alone
        return replace(v, reason="switched") if v.route != previous else v
    if index.head is not None and a.follow_p >= s.followup_threshold:
        return _keep(index, a, previous, "followup", v)
    if v.route == previous:
        return v
    if previous is None or previous not in index.routes:
        return v  # nothing to stick to
    prev_i = index.routes.index(previous)
    if v.reason == "similarity" or index.head is None:
        switch_at = index.switch_at if s.switch_threshold is None else s.switch_threshold
        top = float(a.sims.max()) if v.route is None else float(v.score or 0.0)
        lead = v.margin if v.margin is not None else top
        if top >= switch_at and top - float(a.sims[prev_i]) >= s.switch_margin and lead >= s.switch_lead:
            return v
        return _keep(index, a, previous, "sticky", v)
    if v.confidence >= s.switch_probability:
        return v
    return _keep(index, a, previous, "sticky", v)


def _keep(index: RouteIndex, a: Assessment, previous: str | None, reason: str, fresh: Verdict) -> Verdict:
    if previous is None:
        return Verdict(None, reason, a.none_p if a.route_p is not None else None, fresh.route or "none")
    i = index.routes.index(previous)
    claimed = a.route_p is not None and i in index.claimed
    score = float(a.route_p[i]) if claimed else float(a.sims[i])  # type: ignore[index]
    return Verdict(previous, reason, score, fresh.route or "none")


def _model_text(text: str, s: RouterSettings) -> tuple[str, str | None]:
    """The text the model reads for one genuine turn, and the topic-switch marker it opened with."""
    if s.switch_markers:
        found = find_switch(text)
        if found is not None:
            return found.rest, found.marker
    return text, None


SIMILARITY_ENCODERS = ("both", "minilm", "head")
_SIMILARITY: dict[Any, Encoder | CompositeEncoder] = {}
_SIMILARITY_LOCK = threading.Lock()


def similarity_encoder(backend: str = "auto", head_encoder: Any = None, mix: float = 0.0) -> Encoder | CompositeEncoder:
    """The encoder for configs decided by similarity: MiniLM, or with `mix` > 0 MiniLM and
    `head_encoder` weighted 1 - mix : mix. One per process and combination (they are thread-safe and
    cache vectors), loaded on first use."""
    with _SIMILARITY_LOCK:
        if backend not in _SIMILARITY:
            _SIMILARITY[backend] = Encoder(backend=backend)
        minilm = _SIMILARITY[backend]
        if head_encoder is None or mix <= 0.0:
            return minilm
        key = (backend, id(head_encoder), mix)
        if key not in _SIMILARITY:
            _SIMILARITY[key] = CompositeEncoder([minilm, head_encoder], [1.0 - mix, mix])
        return _SIMILARITY[key]


def with_classifier(index: RouteIndex, prefs: Sequence[Preference], s: RouterSettings) -> RouteIndex:
    """`index` with a route classifier fitted on its vectors, when routes decided by similarity have
    examples to learn from."""
    if s.example_weight <= 0 or not index.fallback or not any(prefs[i].examples for i in index.fallback):
        return index
    index.classifier = fewshot.fit(index.vectors, index.owner, index.n_routes)  # the index is not shared yet
    index.example_weight = s.example_weight
    return index


def default_encoder(head: Head | None, backend: str = "auto") -> Encoder | CompositeEncoder:
    """The encoder the task head was trained with (MiniLM alone when there is no head)."""
    if head is None:
        return Encoder(backend=backend)
    return build_encoder(head.encoders, backend=backend, max_tokens=head.max_tokens)


class Router:
    """Decides the route of a request from the configured routing preferences."""

    def __init__(self, preferences: Iterable[Any], encoder: Encoder | CompositeEncoder | Any | None = None,
                 settings: RouterSettings | None = None, sessions: SessionStore | None = None) -> None:  # fmt: skip
        self.preferences: tuple[Preference, ...] = tuple(Preference.coerce(p) for p in preferences)
        names = [p.name for p in self.preferences]
        if len(set(names)) != len(names):
            raise ValueError("routing preference names must be unique")
        self.settings = settings or RouterSettings()
        if self.settings.similarity_encoder not in SIMILARITY_ENCODERS:
            raise ValueError(f"similarity_encoder must be one of {', '.join(SIMILARITY_ENCODERS)}, "
                             f"got {self.settings.similarity_encoder!r}")  # fmt: skip
        self.head: Head | None = None
        if self.preferences and self.settings.use_head and head_available(self.settings.head):
            self.head = load_head(self.settings.head)
        if encoder is None and self.preferences:
            encoder = default_encoder(self.head)
        self.encoder = encoder
        self.sessions = sessions or SessionStore(self.settings.session_max_entries, self.settings.session_ttl_s)
        self._by_name = {p.name: p for p in self.preferences}
        self._index: RouteIndex | None = None
        self._build_lock = threading.Lock()
        self.build_ms: float | None = None
        self._training: tuple[list[dict[str, Any]], np.ndarray] | None = None
        # Session states shared with other processes (gateway/state/shared.py): `await load(key)` before a
        # decision, `save(key, state, known)` after it (off the decision's path). None: this process only.
        self.remote_sessions: Any = None

    # -- the index ------------------------------------------------------------------------------
    def _cache_key(self) -> tuple[int, str]:
        model = repr((getattr(self.encoder, "model_path", None), getattr(self.encoder, "max_tokens", None)))
        return id(self.encoder), model + _fingerprint(self.preferences, self.settings, self.head)

    def _adopt(self, key: tuple[int, str], index: RouteIndex) -> RouteIndex:
        with _INDEX_LOCK:
            _INDEXES[key] = index
            _INDEXES.move_to_end(key)
            while len(_INDEXES) > 8:
                _INDEXES.popitem(last=False)
        self._index = index
        return index

    def _build_plan(self) -> RouteIndex | tuple[tuple[int, str], list[list[str]], list[str], float]:
        """The cached index for this config, or what must be embedded to build it."""
        key = self._cache_key()
        with _INDEX_LOCK:
            found = _INDEXES.get(key)
        if found is not None:
            self._index = found
            return found
        route_texts = _route_texts(self.preferences)
        return key, route_texts, _all_texts(route_texts, self.head), time.perf_counter()

    def _complete(self, plan: tuple[tuple[int, str], list[list[str]], list[str], float], vecs: np.ndarray) -> RouteIndex:
        key, route_texts, texts, start = plan
        head = self.head
        if head is not None and vecs.shape[1] != head.W.shape[0]:
            log.warning("router: the encoder gives %d-dimensional vectors, the task head reads %d; "
                        "routing by description similarity only", vecs.shape[1], head.W.shape[0])  # fmt: skip
            head = None
        index = _assemble(self.preferences, self.settings, route_texts, head, dict(zip(texts, vecs)))
        s = self.settings
        if index.head is not None and index.fallback and s.similarity_encoder != "head" \
                and MINILM not in index.head.encoders:  # fmt: skip
            # Not every route maps onto the taxonomy, so every route is decided by similarity: in
            # MiniLM's space (where the similarity thresholds and switch rules were tuned; topic-style
            # configs such as CLINC150 and SGD score markedly lower in the head's USE space alone),
            # with "both" mixed with a share of the head's encoder, which knows other words.
            mix = s.similarity_mix if s.similarity_encoder == "both" else 0.0
            encoder = similarity_encoder(getattr(self.encoder, "backend", "auto"), self.encoder, mix)
            flat = list(dict.fromkeys(t for group in route_texts for t in group))
            index = _assemble(self.preferences, s, route_texts, None,
                              dict(zip(flat, encoder.encode_sync(flat))), index.mapping)  # fmt: skip
            index.query_encoder = encoder
        index = with_classifier(index, self.preferences, s)
        self.build_ms = (time.perf_counter() - start) * 1000.0
        return self._adopt(key, index)

    def query_encoder(self) -> Any:
        """The encoder requests are embedded with (after `prepare`): MiniLM when every route is decided
        by similarity, else the router's own."""
        index = self._index
        return index.query_encoder if index is not None and index.query_encoder is not None else self.encoder

    def prepare_sync(self) -> RouteIndex | None:
        """Load the model and build the route vectors (blocking); cached per config content."""
        if self._index is not None or not self.preferences:
            return self._index
        with self._build_lock:
            if self._index is not None:
                return self._index
            plan = self._build_plan()
            if isinstance(plan, RouteIndex):
                return plan
            assert self.encoder is not None
            return self._complete(plan, self.encoder.encode_sync(plan[2]))

    async def prepare(self) -> RouteIndex | None:
        """`prepare_sync` in a worker thread, so the event loop never waits for the model."""
        if self._index is not None or not self.preferences:
            return self._index
        return await asyncio.get_running_loop().run_in_executor(None, self.prepare_sync)

    @property
    def index(self) -> RouteIndex | None:
        return self._index

    # -- deciding -------------------------------------------------------------------------------
    def _decision(self, index: RouteIndex, verdict: Verdict, a: Assessment, turn: Turn, text: str,
                  switch: str | None, previous: str | None, reason: str | None, start: float) -> Decision:  # fmt: skip
        if a.route_p is not None:
            scores = {r: round(float(a.sims[i] if i in index.fallback else a.route_p[i]), 4) for i, r in enumerate(index.routes)}
        else:
            scores = {r: round(float(a.sims[i]), 4) for i, r in enumerate(index.routes)}
        tasks: dict[str, float] = {}
        if a.probs is not None and index.head is not None:
            top = np.argsort(-a.probs)[:5]
            tasks = {index.head.classes[c]: round(float(a.probs[c]), 4) for c in top if a.probs[c] >= 0.01}
        pref = self._by_name.get(verdict.route) if verdict.route else None
        return Decision(
            route=verdict.route,
            models=pref.models if pref else (),
            reason=reason or verdict.reason,
            scores=scores,
            score=None if verdict.score is None else round(verdict.score, 4),
            runner_up=verdict.runner_up,
            margin=None if verdict.margin is None else round(verdict.margin, 4),
            unrouted=verdict.unrouted if verdict.route is None else None,
            previous=previous,
            text=text,
            session=turn.session_key,
            latency_ms=round((time.perf_counter() - start) * 1000.0, 3),
            tasks=tasks,
            switch=switch,
            mode="head" if index.head is not None else "similarity",
        )

    def _plain(self, turn: Turn, route: str | None, reason: str, previous: str | None, start: float) -> Decision:
        pref = self._by_name.get(route) if route else None
        return Decision(route, pref.models if pref else (), reason, {}, previous=previous, text=turn.text,
                        session=turn.session_key, latency_ms=round((time.perf_counter() - start) * 1000.0, 3))  # fmt: skip

    def _plan_turn(self, body: dict[str, Any], protocol: Protocol, session_header: str | None
                   ) -> tuple[Turn, SessionState | None, list[tuple[str, str | None]]]:  # fmt: skip
        """The turn, its session state, and the (model text, switch marker) of every turn to decide."""
        s = self.settings
        turn = latest_turn(body, protocol, session_header, max_chars=s.max_chars, history=s.history_turns)
        state = self.sessions.get(turn.session_key) if s.sticky else None
        if not turn.text:
            return turn, state, []
        if state is not None and state.fingerprint == turn.fingerprint and not turn.has_text:
            return turn, state, []  # tool loop inside a turn already decided
        texts = [turn.text]
        if s.sticky and state is None and turn.history:
            texts = [*reversed(turn.history), turn.text]
        return turn, state, [_model_text(t, s) for t in texts]

    def _finish(self, turn: Turn, state: SessionState | None, needs: list[tuple[str, str | None]],
                vecs: np.ndarray | None, start: float) -> Decision:  # fmt: skip
        index = self._index
        s = self.settings
        assert index is not None
        if not turn.text:
            if state is not None and state.route is not None:
                return self._plain(turn, state.route, "tool_loop" if turn.kind == "tool_result" else "no_text", state.route, start)
            return self._plain(turn, None, "no_text", None, start)
        if vecs is None:  # tool loop (or image-only turn) of a turn already decided
            assert state is not None
            reason = "tool_loop" if turn.kind == "tool_result" else "no_text"
            return self._plain(turn, state.route, reason, state.route, start)
        found = index.assess(vecs, [t for t, _ in needs])
        # The route in force before this turn: the session's, or replayed from earlier turns.
        if state is not None:
            previous, known = (state.before if state.fingerprint == turn.fingerprint else state.route), True
        else:
            previous, known = None, False
            for a, (_, marker) in zip(found[:-1], needs[:-1]):
                previous = judge(index, a, s, previous, known, marker is not None).route
                known = True
        text, marker = needs[-1]
        verdict = judge(index, found[-1], s, previous, known, marker is not None)
        if s.sticky:
            self.sessions.put(turn.session_key, SessionState(verdict.route, previous, turn.fingerprint))
        reason = None if turn.has_text else ("tool_loop" if turn.kind == "tool_result" else "no_text")
        return self._decision(index, verdict, found[-1], turn, text, marker, previous, reason, start)

    async def decide(self, body: dict[str, Any], protocol: Protocol = "anthropic",
                     session_header: str | None = None) -> Decision:  # fmt: skip
        """Route one request body (parsed JSON) of the given protocol; never blocks the loop."""
        start = time.perf_counter()
        if not self.preferences:
            return Decision(None, (), "no_preferences", {})
        remote = self.remote_sessions if self.settings.sticky else None
        known = False
        if remote is not None:
            # Another process may have decided this conversation's earlier turns.
            key = session_key(body, protocol, session_header)
            found = await remote.load(key)
            if found is not None:
                self.sessions.put(key, found)
                known = True
        turn, state, needs = self._plan_turn(body, protocol, session_header)
        await self.prepare()
        vecs = await self.query_encoder().encode([t for t, _ in needs]) if needs else None
        decision = self._finish(turn, state, needs, vecs, start)
        if remote is not None and (latest := self.sessions.get(turn.session_key)) is not None:
            remote.save(turn.session_key, latest, known)
        return decision

    def decide_sync(self, body: dict[str, Any], protocol: Protocol = "anthropic",
                    session_header: str | None = None) -> Decision:  # fmt: skip
        """Blocking `decide`, for the CLI and benchmarks."""
        start = time.perf_counter()
        if not self.preferences:
            return Decision(None, (), "no_preferences", {})
        turn, state, needs = self._plan_turn(body, protocol, session_header)
        self.prepare_sync()
        vecs = self.query_encoder().encode_sync([t for t, _ in needs]) if needs else None
        return self._finish(turn, state, needs, vecs, start)

    def describe(self) -> dict[str, Any]:
        """What each route is made of: vectors, claimed task classes, and how it is decided."""
        index = self.prepare_sync()
        if index is None:
            return {"routes": {}}
        routes: dict[str, Any] = {}
        for i, p in enumerate(self.preferences):
            claims = index.mapping.claims.get(p.name, ()) if index.mapping else ()
            routes[p.name] = {
                "decided_by": "similarity" if i in index.fallback else "task_head",
                "tasks": list(claims),
                "tasks_from_examples": list(index.mapping.by_examples.get(p.name, ())) if index.mapping else [],
                "vectors": index.counts.get(p.name, 0),
                "examples": len(p.examples),
            }
            if i in index.fallback and index.head is not None:
                routes[p.name]["note"] = "matches no task class: decided by description similarity"
        unrouted = [c for c, o in zip(index.head.classes, index.class_owner) if o == -1 and c != FOLLOWUP] \
            if index.head is not None and index.class_owner is not None else []  # fmt: skip
        return {
            "mode": "head" if index.head is not None else "similarity",
            "routes": routes,
            "unrouted": unrouted,
            "settings": asdict(self.settings),
            "encoder": self.encoder.info() if self.encoder else None,
            "similarity_encoder": index.query_encoder.info() if index.query_encoder is not None else None,
            "example_classifier": index.classifier is not None,
            "head": {k: v for k, v in index.head.meta.items() if k != "classes"} if index.head else None,
        }

    # -- explaining -----------------------------------------------------------------------------
    def _training_vectors(self) -> tuple[list[dict[str, Any]], np.ndarray] | None:
        """The head's training requests and their vectors (embedded once, then kept on disk)."""
        if self._training is not None:
            return self._training
        index = self.prepare_sync()
        if index is None or index.head is None or self.encoder is None:
            return None
        from router.encoder import default_cache_dir
        from router.taxonomy import training_rows

        rows = training_rows()
        if not rows:
            return None
        digest = hashlib.sha256(repr((index.head.meta.get("data_hash"), index.head.encoders, index.head.max_tokens,
                                      len(rows))).encode()).hexdigest()[:16]  # fmt: skip
        path = default_cache_dir() / f"training-vectors-{digest}.npy"
        vectors: np.ndarray | None = None
        try:
            vectors = np.load(path)
            if vectors.shape[0] != len(rows):
                vectors = None
        except (OSError, ValueError):
            vectors = None
        if vectors is None:
            vectors = self.encoder.encode_sync([r["text"] for r in rows]).astype(np.float16)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, vectors)
            except OSError:
                pass  # an unwritable cache only costs the next explanation the same wait
        self._training = (rows, vectors.astype(np.float32))
        return self._training

    def explain(self, body: dict[str, Any], protocol: Protocol = "anthropic", session_header: str | None = None,
                nearest_k: int = 5) -> dict[str, Any]:  # fmt: skip
        """The decision with everything behind it: every task class's probability, every route's
        score and claimed classes, and the nearest training requests (or, for a route decided by
        similarity, the nearest description phrases and examples)."""
        from router.taxonomy import nearest

        decision = self.decide_sync(body, protocol, session_header)
        out: dict[str, Any] = {"decision": decision.as_dict(), "routes": self.describe()["routes"]}
        index = self._index
        if index is None or not decision.text or self.encoder is None:
            return out
        encoder = self.query_encoder()
        vec = encoder.encode_sync([decision.text])[0]
        a = index.assess(vec[None, :], [decision.text])[0]
        if a.probs is not None and index.head is not None:
            order = np.argsort(-a.probs)
            out["tasks"] = {index.head.classes[c]: round(float(a.probs[c]), 4) for c in order}
            out["no_route"] = round(a.none_p, 4)
            out["followup"] = round(a.follow_p, 4)
            found = self._training_vectors()
            if found is not None:
                rows, vectors = found
                out["nearest_training"] = [{"text": rows[i]["text"][:300], "task": rows[i]["task"], "lang": rows[i].get("lang"),
                                            "similarity": round(s, 4)} for i, s in nearest(vec, vectors, nearest_k)]  # fmt: skip
        if index.classifier is not None:  # what the examples taught, beside the similarity it sharpens
            log_p = index.classifier.log_probs(vec[None, :])[0]
            out["example_classifier"] = {"weight": index.example_weight, "probability": {
                index.routes[i]: round(float(np.exp(log_p[i])), 4) for i in np.argsort(-log_p)}}  # fmt: skip
        texts = [t for group in _route_texts(self.preferences) for t in group]
        owners = [p.name for p, group in zip(self.preferences, _route_texts(self.preferences)) for _ in group]
        # route texts come from the encoder's cache: they were embedded to build the index
        out["nearest_route_texts"] = [{"route": owners[i], "text": texts[i], "similarity": round(s, 4)}
                                      for i, s in nearest(vec, encoder.encode_sync(texts), nearest_k)]  # fmt: skip
        return out
