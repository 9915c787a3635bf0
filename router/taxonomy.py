"""The task taxonomy, the trained head that predicts it, and how configured routes map onto it.

The head is a multinomial logistic regression over sentence embeddings and word features
(router/lexical.py), trained offline on router/training/data (router/training/train.py) and shipped
as `router/head.npz`, about a megabyte. It reads one request text and gives a probability for each task class of
router/taxonomy.yaml (code_review, code_generation, math_problem, creative_writing, followup...).

A configured route does not need to know the taxonomy: `map_routes` lets each route claim the
classes its description (and its `examples:`, when given) matches, and a route's probability is the
sum of its classes' probabilities. Classes no route claims stand for "no route". A route that claims
nothing is decided by description similarity instead (see router/preferences.py).

Pure functions over arrays; loading the shipped files is the only I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from router.lexical import Lexicon

HERE = Path(__file__).resolve().parent
TAXONOMY_FILE = HERE / "taxonomy.yaml"
HEAD_FILE = HERE / "head.npz"
FOLLOWUP = "followup"  # the class of content-free continuations; never claimed by a route


@dataclass(frozen=True)
class TaskClass:
    name: str
    description: str
    family: str | None = None


@lru_cache(maxsize=4)
def load_taxonomy(path: str | None = None) -> tuple[TaskClass, ...]:
    data = yaml.safe_load(Path(path or TAXONOMY_FILE).read_text(encoding="utf-8")) or {}
    return tuple(TaskClass(str(c["name"]), " ".join(str(c["description"]).split()), c.get("family"))
                 for c in data["classes"])  # fmt: skip


@dataclass(frozen=True)
class Head:
    """Softmax regression over `classes`: probs = softmax((x - mean) @ W + words(text) @ W_words + b),
    where x is the text's sentence embedding and words(text) its word features (router/lexical.py)."""

    classes: tuple[str, ...]
    encoders: tuple[str, ...]  # the encoder parts whose concatenated vectors the head reads
    max_tokens: int  # the token budget the head was trained with
    W: np.ndarray  # (dim, n_classes)
    b: np.ndarray  # (n_classes,)
    mean: np.ndarray  # (dim,)
    centroids: np.ndarray  # (n_classes, dim) unit mean training vector per class (for route mapping)
    meta: dict  # training summary (sizes, accuracy under cross-validation, data hash)
    lexicon: Lexicon | None = None  # word features; None for a head trained on embeddings alone
    W_words: np.ndarray | None = None  # (len(lexicon), n_classes)

    def probs(self, x: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Class probabilities of each embedded text; `texts` (the same texts) for the word
        features, which a head with a lexicon needs."""
        z = (np.atleast_2d(x) - self.mean) @ self.W + self.b
        if self.lexicon is not None and self.W_words is not None:
            if texts is None or len(texts) != len(z):
                raise ValueError("this head reads word features: pass the texts with their vectors")
            z = z + self.lexicon.project(texts, self.W_words)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def index(self, name: str) -> int:
        return self.classes.index(name)


@lru_cache(maxsize=4)
def load_head(path: str | None = None) -> Head:
    with np.load(Path(path or HEAD_FILE), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        lexicon, W_words = None, None
        if "words" in z.files:
            lexicon = Lexicon.from_arrays(unpack_words(z["words"]), z["idf"])
            W_words = z["W_words"].astype(np.float32)
        return Head(tuple(meta["classes"]), tuple(meta["encoders"]), int(meta["max_tokens"]),
                    z["W"].astype(np.float32), z["b"].astype(np.float32), z["mean"].astype(np.float32),
                    z["centroids"].astype(np.float32), meta, lexicon, W_words)  # fmt: skip


def pack_words(words: Sequence[str]) -> np.ndarray:
    """A vocabulary as UTF-8 bytes, one word per line (compact in an .npz, no pickling)."""
    return np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)


def unpack_words(packed: np.ndarray) -> list[str]:
    return bytes(packed).decode("utf-8").split("\n")


def head_available(path: str | None = None) -> bool:
    return Path(path or HEAD_FILE).is_file()


# ---------------------------------------------------------------------------------------------
# Routes onto classes


@dataclass(frozen=True)
class Mapping:
    """Which taxonomy classes each route claims, and how well each class matched each route."""

    claims: dict[str, tuple[str, ...]]  # route -> classes
    owner: tuple[int, ...]  # class index -> route index, or -1 for "no route"
    affinity: dict[str, dict[str, float]]  # class -> route -> affinity
    by_examples: dict[str, tuple[str, ...]]  # route -> classes claimed through its examples

    def fallback_routes(self, routes: Sequence[str]) -> list[str]:
        """Routes that claimed no class: decided by description similarity."""
        return [r for r in routes if not self.claims.get(r)]


def map_routes(routes: Sequence[str], route_vecs: Sequence[np.ndarray], classes: Sequence[str],
               class_phrase_vecs: Sequence[np.ndarray], centroids: np.ndarray, threshold: float,
               example_probs: Sequence[np.ndarray | None] = (), example_share: float = 0.25,
               families: dict[str, str] | None = None) -> Mapping:  # fmt: skip
    """Let each route claim taxonomy classes.

    `route_vecs[i]`: unit vectors of route i's description side (the description, its phrases and
    its name); `class_phrase_vecs[c]`: vectors of class c's description and its phrases;
    `centroids[c]`: class c's training centroid. Affinity of a class to a route is half the best
    phrase-to-phrase similarity and half the best similarity of the route's phrases to the class
    centroid (what users write as a description is a phrase list; the centroid says what requests of
    that class look like). A class goes to the route it matches best, when that affinity reaches
    `threshold`. `families` (class -> family): a route that claimed at least half of a family, with
    no other route holding any of it, takes the rest of the family. A route with `examples:` also claims every class that at least `example_share` of
    its examples fall into (mean head probability), taking it from a description match.
    """
    owner = [-1] * len(classes)
    affinity: dict[str, dict[str, float]] = {}
    for c, name in enumerate(classes):
        if name == FOLLOWUP or not routes:
            continue
        sims = [float(0.5 * (rv @ class_phrase_vecs[c].T).max() + 0.5 * (rv @ centroids[c]).max()) for rv in route_vecs]
        affinity[name] = {r: round(s, 4) for r, s in zip(routes, sims)}
        best = int(np.argmax(sims))
        if sims[best] >= threshold:
            owner[c] = best
    members: dict[str, list[int]] = {}
    for c, name in enumerate(classes):
        if families and families.get(name):
            members.setdefault(families[name], []).append(c)
    for group in members.values():
        holders = {owner[c] for c in group if owner[c] >= 0}
        if len(holders) == 1:
            holder = holders.pop()
            if 2 * sum(owner[c] == holder for c in group) >= len(group):
                for c in group:
                    owner[c] = holder
    by_examples: dict[str, tuple[str, ...]] = {}
    for r, probs in enumerate(example_probs):
        if probs is None or not len(probs):
            continue
        share = np.asarray(probs).mean(axis=0)
        taken = [c for c, name in enumerate(classes) if name != FOLLOWUP and share[c] >= example_share]
        for c in taken:
            owner[c] = r
        by_examples[routes[r]] = tuple(classes[c] for c in taken)
    claims = {r: tuple(classes[c] for c in range(len(classes)) if owner[c] == i) for i, r in enumerate(routes)}
    return Mapping(claims, tuple(owner), affinity, by_examples)


def route_probs(probs: np.ndarray, owner: Sequence[int], n_routes: int, followup: int | None) -> tuple[np.ndarray, float, float]:
    """(probability per route, probability of no route, probability of a follow-up) from class
    probabilities; route and no-route mass are renormalised without the follow-up class."""
    owner_arr = np.asarray(owner)
    p = np.asarray(probs, dtype=np.float64)
    p_follow = float(p[followup]) if followup is not None else 0.0
    rest = max(1.0 - p_follow, 1e-9)
    routes = np.array([p[owner_arr == r].sum() for r in range(n_routes)]) / rest
    keep = owner_arr == -1
    if followup is not None:
        keep[followup] = False
    return routes, float(p[keep].sum() / rest), p_follow


# ---------------------------------------------------------------------------------------------
# The training examples, for explanations


def training_rows(folder: Path | None = None) -> list[dict]:
    """The head's training requests (router/training/data/*.jsonl), in file order."""
    rows: list[dict] = []
    for file in sorted((folder or HERE / "training" / "data").glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def nearest(query: np.ndarray, vectors: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Indexes and cosines of the `k` rows of `vectors` nearest to `query`."""
    sims = vectors @ np.asarray(query, dtype=np.float32)
    top = np.argsort(-sims, kind="stable")[:k]
    return [(int(i), float(sims[i])) for i in top]
