"""Word features for the task head: which words and word pairs a request contains.

Sentence embeddings blur the words that decide a task ("haiku", "audit", "prove", "翻译"): a request
to write a poem about a database and a request to fix that database embed close together. The head
therefore also reads a bag of words and word pairs, weighted by inverse document frequency over its
training set and scaled to unit length. The vocabulary and the weights ship in router/head.npz.

Tokens: Latin, Cyrillic and Hangul words (lower-cased), single CJK ideographs and kana (Chinese and
Japanese have no spaces; single characters and their pairs are the usual units), and the punctuation
that marks code; plus every pair of neighbouring tokens.

Pure functions; a few tenths of a millisecond for a 2,000-character request.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

MAX_CHARS = 4000  # longer texts are cut before tokenising (the router passes at most max_chars)

_TOKEN = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*"  # identifiers and English words
    r"|[\u3040-\u30ff]"  # kana, one character each
    r"|[\u4e00-\u9fff]"  # CJK ideographs, one character each
    r"|[\uac00-\ud7af]+"  # Hangul words
    r"|[\u0400-\u04ff]+"  # Cyrillic words
    r"|[À-ÿ\w]+"  # other words and numbers (accented Latin)
    r"|[`#{}();=<>/*.$@-]"  # code punctuation
)


def tokens(text: str) -> set[str]:
    """The distinct tokens and neighbouring token pairs of `text`."""
    words = [w.lower() for w in _TOKEN.findall(text[:MAX_CHARS])]
    found = set(words)
    found.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return found


@dataclass(frozen=True)
class Lexicon:
    """A vocabulary with inverse document frequencies: text -> unit-length weighted bag of tokens."""

    vocab: dict[str, int]
    idf: np.ndarray  # (len(vocab),)

    @classmethod
    def fit(cls, texts: Iterable[str], min_df: int = 2, max_size: int = 20000) -> "Lexicon":
        """The `max_size` most frequent tokens found in at least `min_df` texts (ties by first seen)."""
        df: Counter[str] = Counter()
        n = 0
        for text in texts:
            df.update(tokens(text))
            n += 1
        words = [w for w, c in df.most_common(max_size) if c >= min_df]
        idf = np.array([np.log((1 + n) / (1 + df[w])) + 1.0 for w in words], dtype=np.float32)
        return cls({w: i for i, w in enumerate(words)}, idf)

    @classmethod
    def from_arrays(cls, words: Sequence[str], idf: np.ndarray) -> "Lexicon":
        return cls({str(w): i for i, w in enumerate(words)}, np.asarray(idf, dtype=np.float32))

    @property
    def words(self) -> list[str]:
        return sorted(self.vocab, key=self.vocab.__getitem__)

    def __len__(self) -> int:
        return len(self.vocab)

    def indices(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(token indices, unit-length weights) of `text`: the sparse form of `dense`."""
        idx = np.fromiter((self.vocab[t] for t in tokens(text) if t in self.vocab), dtype=np.int64)
        if not len(idx):
            return idx, np.zeros(0, dtype=np.float32)
        w = self.idf[idx]
        return idx, w / np.float32(np.linalg.norm(w))

    def dense(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), len(vocab)) feature matrix (for training)."""
        out = np.zeros((len(texts), len(self.vocab)), dtype=np.float32)
        for i, text in enumerate(texts):
            idx, w = self.indices(text)
            out[i, idx] = w
        return out

    def project(self, texts: Sequence[str], weights: np.ndarray) -> np.ndarray:
        """(len(texts), weights.shape[1]): each text's features times `weights` (vocab x k), sparsely."""
        out = np.zeros((len(texts), weights.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            idx, w = self.indices(text)
            if len(idx):
                out[i] = w @ weights[idx]
        return out
