"""Word features of the task head (router/lexical.py) and how the head combines them with embeddings:
tokenisation across scripts, idf weighting, the sparse projection, the trained-head round trip."""

from __future__ import annotations

import numpy as np
import pytest

from router.lexical import Lexicon, tokens
from router.taxonomy import Head, head_available, load_head, pack_words, unpack_words


def test_tokens_cover_latin_cjk_hangul_cyrillic_and_code_punctuation():
    assert {"write", "a", "haiku", "write a", "a haiku"} <= tokens("Write a HAIKU")
    # Chinese and Japanese have no spaces: single characters and neighbouring pairs
    assert {"写", "诗", "首", "一 首", "首 诗"} <= tokens("写一首诗")
    assert {"レ", "ビ", "レ ビ"} <= tokens("レビュー")
    assert {"리뷰해", "코드"} <= tokens("코드 리뷰해 주세요")
    assert {"напиши", "стихи", "напиши стихи"} <= tokens("Напиши стихи")
    assert {"`", "{", "(", "def", "def f"} <= tokens("```def f(x): {")
    assert "überprüfe" in tokens("Überprüfe den Code")


def test_vocabulary_keeps_words_seen_in_enough_texts_weighted_by_rarity():
    lex = Lexicon.fit(["fix the bug", "review the bug", "review the code", "a poem"], min_df=2)
    assert set(lex.vocab) == {"the", "bug", "review", "review the", "the bug"}
    assert lex.idf[lex.vocab["review"]] > lex.idf[lex.vocab["the"]]  # rarer words weigh more
    idx, w = lex.indices("please review the bug")
    assert sorted(lex.words[i] for i in idx) == ["bug", "review", "review the", "the", "the bug"]
    assert float(np.linalg.norm(w)) == pytest.approx(1.0)
    assert len(lex.indices("nothing known here")[0]) == 0


def test_sparse_projection_equals_the_dense_product():
    texts = ["review the bug", "the code", "unknown words only", "review review the code bug"]
    lex = Lexicon.fit(texts + ["review bug code the"], min_df=1)
    weights = np.random.default_rng(0).normal(size=(len(lex), 5)).astype(np.float32)
    assert np.allclose(lex.project(texts, weights), lex.dense(texts) @ weights, atol=1e-5)
    assert not lex.project(["unrelated"], weights).any()


def test_word_list_packs_and_unpacks_losslessly():
    words = ["review", "写 诗", "レ ビ", "`", "überprüfe den"]
    assert unpack_words(pack_words(words)) == words


def _head(lexicon: Lexicon | None, W_words: np.ndarray | None) -> Head:
    return Head(("a", "b"), ("test",), 64, np.zeros((3, 2), np.float32), np.zeros(2, np.float32),
                np.zeros(3, np.float32), np.eye(2, 3, dtype=np.float32), {}, lexicon, W_words)  # fmt: skip


def test_a_head_with_words_reads_the_text_and_refuses_to_guess_without_it():
    lex = Lexicon.fit(["poem", "poem", "bug", "bug"], min_df=1)
    W_words = np.zeros((len(lex), 2), np.float32)
    W_words[lex.vocab["poem"], 1] = 5.0
    head = _head(lex, W_words)
    x = np.zeros((2, 3), np.float32)
    p = head.probs(x, ["a poem", "a bug"])
    assert p[0, 1] > 0.99 and p[1] == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError):
        head.probs(x)
    assert _head(None, None).probs(x) == pytest.approx(np.full((2, 2), 0.5))  # embeddings only: no texts needed


@pytest.mark.skipif(not head_available(), reason="router/head.npz is missing: run python -m router.training.train")
def test_the_shipped_head_carries_its_vocabulary_and_word_weights():
    head = load_head()
    assert head.lexicon is not None and head.W_words is not None
    assert head.W_words.shape == (len(head.lexicon), len(head.classes))
    assert head.meta["vocabulary"] == len(head.lexicon) and head.meta["words"] > 0
    # words decide between classes the embedding blurs: "haiku" pushes towards creative writing
    creative = head.classes.index("creative_writing")
    assert head.W_words[head.lexicon.vocab["haiku"], creative] == head.W_words[head.lexicon.vocab["haiku"]].max()
