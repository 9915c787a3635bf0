"""Train the routing head (router/head.npz) from router/training/data/*.jsonl.

    python -m router.training.train                     # the shipped head
    python -m router.training.train --cv 5              # also report cross-validated accuracy

Each data line is {"text", "task", "lang", "style", "hard"}; `task` is a class of
router/taxonomy.yaml. The texts are embedded with the router's encoders (the same code path,
token budget and truncation as at run time); their word features (router/lexical.py: a vocabulary of
the training set's words and word pairs, idf-weighted, unit length, scaled by --words) are appended,
and a multinomial logistic regression is fitted on both (scikit-learn, L-BFGS: deterministic for
the same data and encoder). The output file holds the weights, the feature mean, the vocabulary, each
class's centroid and a summary of the training run; the same data and encoders give the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from router.encoder import KNOWN_ENCODERS, USE_MODEL, build_encoder
from router.lexical import Lexicon
from router.taxonomy import HEAD_FILE, load_taxonomy, pack_words

DATA_DIR = Path(__file__).resolve().parent / "data"


def read_data(folder: Path = DATA_DIR) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for file in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                row["source"] = f"{file.name}:{n}"
                rows.append(row)
    return rows


def check(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> None:
    bad = [r["source"] for r in rows if r.get("task") not in classes or not str(r.get("text", "")).strip()]
    if bad:
        raise SystemExit(f"rows with an unknown task or no text: {', '.join(bad[:10])}")


def data_hash(rows: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['task']}\x00{r['text']}\x01".encode())
    return h.hexdigest()[:16]


@dataclass
class Fitted:
    """A trained head in the form router/taxonomy.Head reads: the word weights already carry the
    word scale, and the word features' mean is folded into the bias."""

    W: np.ndarray  # (embedding dim, n_classes)
    b: np.ndarray
    mean: np.ndarray  # embedding mean
    lexicon: Lexicon | None
    W_words: np.ndarray | None  # (len(lexicon), n_classes)

    def scores(self, X: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        z = (X - self.mean) @ self.W + self.b
        if self.lexicon is not None and self.W_words is not None:
            z = z + self.lexicon.project(texts, self.W_words)
        return z


def fit(X: np.ndarray, texts: Sequence[str], y: np.ndarray, C: float, n_classes: int, words: float,
        min_df: int, vocab: int) -> Fitted:  # fmt: skip
    from sklearn.linear_model import LogisticRegression

    lexicon = Lexicon.fit(texts, min_df=min_df, max_size=vocab) if words > 0 else None
    F = np.hstack([X, words * lexicon.dense(texts)]) if lexicon is not None else X
    mean = F.mean(axis=0)
    model = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
    model.fit(F - mean, y)
    W = np.zeros((F.shape[1], n_classes), dtype=np.float32)
    b = np.full(n_classes, -30.0, dtype=np.float32)  # a class without data is never predicted
    W[:, model.classes_] = model.coef_.T
    b[model.classes_] = model.intercept_
    dim = X.shape[1]
    if lexicon is None:
        return Fitted(W, b, mean.astype(np.float32), None, None)
    W_words = words * W[dim:]
    b = b - mean[dim:] @ W[dim:]
    return Fitted(W[:dim], b.astype(np.float32), mean[:dim].astype(np.float32), lexicon, W_words)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default=USE_MODEL,
                    help=f"comma-separated encoder parts ({', '.join(KNOWN_ENCODERS)}); default %(default)s")  # fmt: skip
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--C", type=float, default=8.0, help="inverse L2 regularisation strength")
    ap.add_argument("--words", type=float, default=2.5, help="scale of the word features (0: embeddings only)")
    ap.add_argument("--min-df", type=int, default=2, help="a word (pair) must occur in this many requests")
    ap.add_argument("--vocab", type=int, default=20000, help="most frequent words and pairs kept")
    ap.add_argument("--cv", type=int, default=0, help="also report k-fold cross-validated accuracy")
    ap.add_argument("--out", default=str(HEAD_FILE))
    ap.add_argument("--data", default=str(DATA_DIR))
    ap.add_argument("--save-vectors", help="also write the training vectors to this .npy file (analysis)")
    args = ap.parse_args(argv)

    classes = [c.name for c in load_taxonomy()]
    rows = read_data(Path(args.data))
    check(rows, classes)
    parts = tuple(p.strip() for p in args.encoders.split(",") if p.strip())
    encoder = build_encoder(parts, max_tokens=args.max_tokens)
    start = time.perf_counter()
    X = encoder.encode_sync([r["text"] for r in rows])
    print(f"encoded {len(rows)} texts with {'+'.join(parts)} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if args.save_vectors:
        np.save(args.save_vectors, X)
    y = np.array([classes.index(r["task"]) for r in rows])

    texts = [r["text"] for r in rows]
    train = {"C": args.C, "words": args.words, "min_df": args.min_df, "vocab": args.vocab}
    meta: dict[str, Any] = {
        "classes": classes, "encoders": list(parts), "max_tokens": args.max_tokens, **train,
        "rows": len(rows), "data_hash": data_hash(rows),
        "per_class": dict(sorted(Counter(r["task"] for r in rows).items())),
        "per_lang": dict(sorted(Counter(r.get("lang", "?") for r in rows).items())),
    }  # fmt: skip
    if args.cv:
        rng = np.random.default_rng(0)
        fold = rng.permutation(len(rows)) % args.cv
        right = np.zeros(len(rows), dtype=bool)
        for k in range(args.cv):
            part = fit(X[fold != k], [t for t, f in zip(texts, fold) if f != k], y[fold != k], n_classes=len(classes), **train)
            held = [t for t, f in zip(texts, fold) if f == k]
            right[fold == k] = part.scores(X[fold == k], held).argmax(axis=1) == y[fold == k]
        meta["cv_accuracy"] = round(float(right.mean()), 4)
        print(f"{args.cv}-fold accuracy over {len(classes)} classes: {right.mean():.1%}", file=sys.stderr)
    head = fit(X, texts, y, n_classes=len(classes), **train)
    centroids = np.zeros((len(classes), X.shape[1]), dtype=np.float32)
    for c in range(len(classes)):
        if np.any(y == c):
            v = X[y == c].mean(axis=0)
            centroids[c] = v / max(float(np.linalg.norm(v)), 1e-12)
    meta["train_accuracy"] = round(float((head.scores(X, texts).argmax(axis=1) == y).mean()), 4)
    arrays: dict[str, np.ndarray] = {
        "W": head.W.astype(np.float16), "b": head.b, "mean": head.mean.astype(np.float16),
        "centroids": centroids.astype(np.float16), "meta": np.array(json.dumps(meta, ensure_ascii=False)),
    }  # fmt: skip
    if head.lexicon is not None and head.W_words is not None:
        meta["vocabulary"] = len(head.lexicon)
        arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=False))
        arrays.update(words=pack_words(head.lexicon.words), idf=head.lexicon.idf.astype(np.float16),
                      W_words=head.W_words.astype(np.float16))  # fmt: skip
    np.savez_compressed(args.out, **arrays)
    print(json.dumps({k: v for k, v in meta.items() if k not in ("classes",)}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
