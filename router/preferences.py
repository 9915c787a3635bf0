"""Route by preference: route vectors, scoring, abstention, stickiness and the decision record.

A route (one configured `routing_preferences` entry) is represented by several unit vectors:

* its description, each phrase of the description (split at commas and semicolons, and at
  "and"/"or" inside such a list or between two multi-word phrases; each phrase also prefixed with
  the description's topic when it has one, as in ``banking: transfers, balances``) and its
  humanised name;
* the `examples:` the user configured (a Junction extension of Plano's schema);
* the example requests of every bank category (`router/bank/*.yaml`) whose description matches the
  route's description best among all routes, above `bank_match_threshold`.

Scoring: the score of a route is the mean of its `top_n` highest cosine similarities to the request
(top-3 mean beat max-similarity, centroid, kNN vote and a softmax head trained at load time on the
CLINC150 validation split; see router/README.md). Bank categories that no route claimed stay in the
index as "unrouted" classes: a request closest to one of them (say, "write a new function" when the
only coding route is about reviewing code) gets no route.

Decision: the best route wins when its score is at least `threshold` and beats the runner-up (any
class) by `margin`; otherwise there is no route and the caller uses the requested or default
model. With `sticky`, a session that already has a route keeps it unless the new turn's best class
scores at least `switch_threshold`, beats the current route's score by `switch_margin` and the
runner-up by `switch_lead`; turns without genuine user text (the agent's tool loop, image-only
turns) keep the session's route without encoding anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

from router.encoder import Encoder
from router.turns import Protocol, Turn, latest_turn

BANK_DIR = Path(__file__).resolve().parent / "bank"
UNROUTED_PREFIX = "bank:"

REASONS = ("matched", "below_threshold", "low_margin", "unrouted", "sticky", "tool_loop", "no_text",
           "no_preferences")  # fmt: skip


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
    """Tuning knobs; the defaults were calibrated on validation data only (see router/README.md)."""

    threshold: float = 0.20  # minimum route score (top-n mean cosine) for a match
    margin: float = 0.0  # minimum lead of the best route over the runner-up class
    top_n: int = 3  # similarities averaged per route
    sticky: bool = True  # keep a session's route through follow-ups and tool loops
    switch_threshold: float | None = 0.40  # score a new class needs to take over (None: threshold)
    switch_margin: float = 0.20  # lead over the current route's score needed to take over
    switch_lead: float = 0.08  # ...and over the runner-up class (an unambiguous winner)
    use_bank: bool = True  # augment routes with matching bank categories
    bank_match_threshold: float = 0.50  # description <-> bank category similarity to attach it
    bank_unrouted: bool = True  # unclaimed bank categories compete as "no route" classes
    bank_unrouted_below: float = 0.45  # ...when their best route similarity is below this
    bank_dir: str | None = None  # another folder of bank YAML files (default router/bank)
    history_turns: int = 3  # earlier user turns replayed when a session is unknown
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
    scores: dict[str, float]
    score: float | None = None  # the best route's score
    runner_up: str | None = None
    margin: float | None = None  # best minus runner-up
    unrouted: str | None = None  # best bank category no route claimed, when it won
    previous: str | None = None  # the session's route before this turn
    text: str = ""
    session: str = ""
    latency_ms: float = 0.0

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


@dataclass(frozen=True)
class BankCategory:
    name: str
    description: str
    examples: tuple[str, ...]
    source: str


_BANKS: dict[str, tuple[BankCategory, ...]] = {}


def load_bank(folder: str | Path | None = None) -> tuple[BankCategory, ...]:
    """The bank categories in `folder` (default router/bank), read once per folder."""
    path = Path(folder) if folder else BANK_DIR
    key = str(path.resolve())
    if key not in _BANKS:
        cats: list[BankCategory] = []
        for file in sorted(path.glob("*.yaml")):
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            for item in data.get("categories", []):
                cats.append(BankCategory(str(item["name"]), str(item["description"]),
                                         tuple(str(e) for e in item.get("examples", [])), file.name))  # fmt: skip
        _BANKS[key] = tuple(cats)
    return _BANKS[key]


# ---------------------------------------------------------------------------------------------
# The index


@dataclass
class RouteIndex:
    """Vectors of every class (routes first, then unrouted bank categories) and their owners."""

    classes: list[str]  # route names, then "bank:<category>" for unrouted categories
    n_routes: int
    vectors: np.ndarray  # (n_vectors, dim)
    owner: np.ndarray  # (n_vectors,) class index
    top_n: int
    attached: dict[str, list[str]] = field(default_factory=dict)  # route -> bank categories
    bank_match: dict[str, dict[str, float]] = field(default_factory=dict)  # category -> route -> sim
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = np.argsort(self.owner, kind="stable")
        self.vectors = np.ascontiguousarray(self.vectors[order], dtype=np.float32)
        self.owner = self.owner[order]
        bounds = np.searchsorted(self.owner, np.arange(len(self.classes) + 1))
        self.spans = [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(self.classes))]

    def score(self, queries: np.ndarray) -> np.ndarray:
        """(n_queries, n_classes) scores: mean of the top-n cosine similarities per class."""
        sims = np.atleast_2d(queries) @ self.vectors.T
        out = np.empty((sims.shape[0], len(self.classes)), dtype=np.float32)
        for j, (lo, hi) in enumerate(self.spans):
            block = sims[:, lo:hi]
            n = min(self.top_n, hi - lo)
            if n == 1:
                out[:, j] = block.max(axis=1)
            else:
                out[:, j] = np.partition(block, hi - lo - n, axis=1)[:, hi - lo - n :].mean(axis=1)
        return out


def _fingerprint(prefs: Sequence[Preference], settings: RouterSettings, bank: Sequence[BankCategory]) -> str:
    h = hashlib.sha256()
    for p in prefs:
        h.update(repr((p.name, p.description, p.examples)).encode())
    h.update(repr((settings.top_n, settings.use_bank, settings.bank_match_threshold, settings.bank_unrouted,
                   settings.bank_unrouted_below)).encode())  # fmt: skip
    for c in bank if settings.use_bank else ():
        h.update(repr((c.name, c.description, c.examples)).encode())
    return h.hexdigest()


_INDEXES: OrderedDict[tuple[int, str], RouteIndex] = OrderedDict()
_INDEX_LOCK = threading.Lock()


def _descriptor_texts(p: Preference) -> list[str]:
    """The description side of a route: description, its phrases and the humanised name."""
    texts = description_texts(p.description)
    name = humanise(p.name)
    if name and name.lower() not in (t.lower() for t in texts):
        texts.append(name)
    return texts


def _route_texts(prefs: Sequence[Preference]) -> list[list[str]]:
    return [list(dict.fromkeys(_descriptor_texts(p) + [e for e in p.examples if e.strip()])) for p in prefs]


def _plan(prefs: Sequence[Preference], settings: RouterSettings) -> tuple[list[list[str]], tuple[BankCategory, ...]]:
    bank = load_bank(settings.bank_dir) if settings.use_bank else ()
    return _route_texts(prefs), bank


def _assemble(prefs: Sequence[Preference], settings: RouterSettings, route_texts: list[list[str]],
              bank: Sequence[BankCategory], vec: dict[str, np.ndarray]) -> RouteIndex:  # fmt: skip
    """Pure part of the index build, given a vector for every text involved."""
    classes = [p.name for p in prefs]
    vectors: list[np.ndarray] = []
    owner: list[int] = []
    for i, texts in enumerate(route_texts):
        vectors += [vec[t] for t in texts]
        owner += [i] * len(texts)
    attached: dict[str, list[str]] = {p.name: [] for p in prefs}
    match: dict[str, dict[str, float]] = {}
    # Only the description side of a route (not its examples) decides which categories it claims:
    # half the best phrase-to-phrase similarity, half the best similarity to the examples' centroid.
    desc_vecs = [np.stack([vec[t] for t in _descriptor_texts(p)]) for p in prefs]
    for cat in bank:
        cat_phrases = np.stack([vec[t] for t in description_texts(cat.description)])
        centroid = np.mean([vec[e] for e in cat.examples], axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        sims = {p.name: float(0.5 * (dv @ cat_phrases.T).max() + 0.5 * (dv @ centroid).max())
                for p, dv in zip(prefs, desc_vecs)}  # fmt: skip
        match[cat.name] = {k: round(v, 4) for k, v in sims.items()}
        best = max(sims, key=sims.__getitem__) if sims else None
        if best is not None and sims[best] >= settings.bank_match_threshold:
            idx = classes.index(best)
            attached[best].append(cat.name)
            vectors += [vec[e] for e in cat.examples]
            owner += [idx] * len(cat.examples)
        elif settings.bank_unrouted and (best is None or sims[best] < settings.bank_unrouted_below):
            classes.append(UNROUTED_PREFIX + cat.name)
            texts = [cat.description, *cat.examples]
            vectors += [vec[t] for t in texts]
            owner += [len(classes) - 1] * len(texts)
    counts = {c: int(np.sum(np.array(owner) == i)) for i, c in enumerate(classes)}
    return RouteIndex(classes, len(prefs), np.stack(vectors), np.array(owner), max(1, settings.top_n),
                      attached, match, counts)  # fmt: skip


def _all_texts(route_texts: list[list[str]], bank: Sequence[BankCategory]) -> list[str]:
    texts = [t for group in route_texts for t in group]
    for cat in bank:
        texts += [*description_texts(cat.description), *cat.examples]
    return list(dict.fromkeys(texts))


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
    best: str  # best class overall (a route or "bank:<category>")
    score: float | None
    runner_up: str | None
    margin: float | None


def judge(classes: Sequence[str], n_routes: int, scores: np.ndarray, settings: RouterSettings,
          previous: str | None = None, has_previous: bool = False) -> Verdict:  # fmt: skip
    """Pick a route from one row of class scores, optionally relative to the session's route."""
    order = np.argsort(-scores, kind="stable")
    best_i = int(order[0])
    second_i = int(order[1]) if len(order) > 1 else None
    best, top = classes[best_i], float(scores[best_i])
    lead = top - float(scores[second_i]) if second_i is not None else top
    runner = classes[second_i] if second_i is not None else None
    route_i = int(np.argmax(scores[:n_routes]))
    route_score = float(scores[route_i])

    if best_i >= n_routes:
        fresh = Verdict(None, "unrouted", best, route_score, runner, lead)
    elif top < settings.threshold:
        fresh = Verdict(None, "below_threshold", best, top, runner, lead)
    elif lead < settings.margin:
        fresh = Verdict(None, "low_margin", best, top, runner, lead)
    else:
        fresh = Verdict(best, "matched", best, top, runner, lead)

    if not (settings.sticky and has_previous and previous is not None and previous in classes[:n_routes]):
        return fresh
    if fresh.route == previous:
        return fresh
    prev_score = float(scores[classes.index(previous)])
    switch_at = settings.threshold if settings.switch_threshold is None else settings.switch_threshold
    if top >= switch_at and top - prev_score >= settings.switch_margin and lead >= settings.switch_lead:
        return fresh  # confidently elsewhere: a new route, or no route (unrouted / ambiguous)
    return Verdict(previous, "sticky", best, prev_score, runner, lead)


class Router:
    """Decides the route of a request from the configured routing preferences."""

    def __init__(self, preferences: Iterable[Any], encoder: Encoder | None = None,
                 settings: RouterSettings | None = None, sessions: SessionStore | None = None) -> None:  # fmt: skip
        self.preferences: tuple[Preference, ...] = tuple(Preference.coerce(p) for p in preferences)
        names = [p.name for p in self.preferences]
        if len(set(names)) != len(names):
            raise ValueError("routing preference names must be unique")
        self.settings = settings or RouterSettings()
        self.encoder = encoder if encoder is not None else (Encoder() if self.preferences else None)
        self.sessions = sessions or SessionStore(self.settings.session_max_entries, self.settings.session_ttl_s)
        self._by_name = {p.name: p for p in self.preferences}
        self._index: RouteIndex | None = None
        self._build_lock = threading.Lock()
        self.build_ms: float | None = None

    # -- the index ------------------------------------------------------------------------------
    def _cache_key(self) -> tuple[int, str]:
        bank = load_bank(self.settings.bank_dir) if self.settings.use_bank else ()
        model = repr((getattr(self.encoder, "model_path", None), getattr(self.encoder, "max_tokens", None)))
        return id(self.encoder), model + _fingerprint(self.preferences, self.settings, bank)

    def _adopt(self, key: tuple[int, str], index: RouteIndex) -> RouteIndex:
        with _INDEX_LOCK:
            _INDEXES[key] = index
            _INDEXES.move_to_end(key)
            while len(_INDEXES) > 8:
                _INDEXES.popitem(last=False)
        self._index = index
        return index

    def _build_plan(self) -> RouteIndex | tuple[tuple[int, str], list[list[str]], tuple[BankCategory, ...], list[str], float]:
        """The cached index for this config, or what must be embedded to build it."""
        key = self._cache_key()
        with _INDEX_LOCK:
            found = _INDEXES.get(key)
        if found is not None:
            self._index = found
            return found
        route_texts, bank = _plan(self.preferences, self.settings)
        return key, route_texts, bank, _all_texts(route_texts, bank), time.perf_counter()

    def _complete(self, plan: tuple[tuple[int, str], list[list[str]], tuple[BankCategory, ...], list[str], float],
                  vecs: np.ndarray) -> RouteIndex:  # fmt: skip
        key, route_texts, bank, texts, start = plan
        index = _assemble(self.preferences, self.settings, route_texts, bank, dict(zip(texts, vecs)))
        self.build_ms = (time.perf_counter() - start) * 1000.0
        return self._adopt(key, index)

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
            return self._complete(plan, self.encoder.encode_sync(plan[3]))

    async def prepare(self) -> RouteIndex | None:
        """`prepare_sync` in a worker thread, so the event loop never waits for the model."""
        if self._index is not None or not self.preferences:
            return self._index
        return await asyncio.get_running_loop().run_in_executor(None, self.prepare_sync)

    @property
    def index(self) -> RouteIndex | None:
        return self._index

    # -- deciding -------------------------------------------------------------------------------
    def _decision(self, index: RouteIndex, verdict: Verdict, scores: np.ndarray, turn: Turn,
                  previous: str | None, reason: str | None, start: float) -> Decision:  # fmt: skip
        route_scores = {c: round(float(s), 4) for c, s in zip(index.classes[: index.n_routes], scores)}
        pref = self._by_name.get(verdict.route) if verdict.route else None
        return Decision(
            route=verdict.route,
            models=pref.models if pref else (),
            reason=reason or verdict.reason,
            scores=route_scores,
            score=None if verdict.score is None else round(verdict.score, 4),
            runner_up=verdict.runner_up,
            margin=None if verdict.margin is None else round(verdict.margin, 4),
            unrouted=verdict.best.removeprefix(UNROUTED_PREFIX) if verdict.reason == "unrouted" else None,
            previous=previous,
            text=turn.text,
            session=turn.session_key,
            latency_ms=round((time.perf_counter() - start) * 1000.0, 3),
        )

    def _plain(self, turn: Turn, route: str | None, reason: str, previous: str | None, start: float) -> Decision:
        pref = self._by_name.get(route) if route else None
        return Decision(route, pref.models if pref else (), reason, {}, previous=previous, text=turn.text,
                        session=turn.session_key, latency_ms=round((time.perf_counter() - start) * 1000.0, 3))  # fmt: skip

    def _plan_turn(self, body: dict[str, Any], protocol: Protocol, session_header: str | None
                   ) -> tuple[Turn, SessionState | None, list[str]]:  # fmt: skip
        """The turn, its session state, and the texts that must be embedded to decide it."""
        s = self.settings
        turn = latest_turn(body, protocol, session_header, max_chars=s.max_chars, history=s.history_turns)
        state = self.sessions.get(turn.session_key) if s.sticky else None
        if not turn.text:
            return turn, state, []
        if state is not None and state.fingerprint == turn.fingerprint and not turn.has_text:
            return turn, state, []  # tool loop inside a turn already decided
        needs = [turn.text]
        if s.sticky and state is None and turn.history:
            needs = [*reversed(turn.history), turn.text]
        return turn, state, needs

    def _finish(self, turn: Turn, state: SessionState | None, texts: list[str], vecs: np.ndarray | None,
                start: float) -> Decision:  # fmt: skip
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
        scores = index.score(vecs)
        # The route in force before this turn: the session's, or replayed from earlier turns.
        if state is not None:
            previous, known = (state.before if state.fingerprint == turn.fingerprint else state.route), True
        else:
            previous, known = None, False
            for row in scores[:-1]:
                previous = judge(index.classes, index.n_routes, row, s, previous, known).route
                known = True
        verdict = judge(index.classes, index.n_routes, scores[-1], s, previous, known)
        if s.sticky:
            self.sessions.put(turn.session_key, SessionState(verdict.route, previous, turn.fingerprint))
        reason = None if turn.has_text else ("tool_loop" if turn.kind == "tool_result" else "no_text")
        return self._decision(index, verdict, scores[-1, : index.n_routes], turn, previous, reason, start)

    async def decide(self, body: dict[str, Any], protocol: Protocol = "anthropic",
                     session_header: str | None = None) -> Decision:  # fmt: skip
        """Route one request body (parsed JSON) of the given protocol; never blocks the loop."""
        start = time.perf_counter()
        if not self.preferences:
            return Decision(None, (), "no_preferences", {})
        turn, state, needs = self._plan_turn(body, protocol, session_header)
        await self.prepare()
        vecs = await self.encoder.encode(needs) if needs else None  # type: ignore[union-attr]
        return self._finish(turn, state, needs, vecs, start)

    def decide_sync(self, body: dict[str, Any], protocol: Protocol = "anthropic",
                    session_header: str | None = None) -> Decision:  # fmt: skip
        """Blocking `decide`, for the CLI and benchmarks."""
        start = time.perf_counter()
        if not self.preferences:
            return Decision(None, (), "no_preferences", {})
        turn, state, needs = self._plan_turn(body, protocol, session_header)
        self.prepare_sync()
        vecs = self.encoder.encode_sync(needs) if needs else None  # type: ignore[union-attr]
        return self._finish(turn, state, needs, vecs, start)

    def describe(self) -> dict[str, Any]:
        """What each route is made of (vector counts, attached bank categories)."""
        index = self.prepare_sync()
        if index is None:
            return {"routes": {}}
        return {
            "routes": {p.name: {"vectors": index.counts.get(p.name, 0), "bank": index.attached.get(p.name, []),
                                "examples": len(p.examples)} for p in self.preferences},  # fmt: skip
            "unrouted": [c.removeprefix(UNROUTED_PREFIX) for c in index.classes[index.n_routes :]],
            "settings": asdict(self.settings),
            "encoder": self.encoder.info() if self.encoder else None,
        }
