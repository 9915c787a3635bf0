"""Routing accuracy and decision latency of the embedding router (router/).

    .venv/bin/python benchmarks/routing_accuracy.py            # full run (several minutes on 2 cores)
    .venv/bin/python benchmarks/routing_accuracy.py --quick    # subset, under 2 minutes

Suites (data read at run time from ../shared/routing-data, or --data; never copied here):

* clinc_domains  CLINC150 test, 10 domain routes, + the 1,000 out-of-scope test queries
* clinc_intents  CLINC150 test, 150 intent routes, + out-of-scope
* banking77      BANKING77 test, 77 intent routes (no out-of-scope data)
* sgd            Schema-Guided Dialogue, 17 domain routes, multi-turn (test = the SGD dev split;
                 examples and calibration come from the train split)
* mt_bench       MT-bench, 8 category routes, turn 1 and the follow-up turn 2
* agent          the preference-routing development set (agent_routes_dev.jsonl: 400 coding-agent and
                 chat requests, 26 % not in English) on the seed config's three routes, each item a whole
                 request body decided as a new conversation, exactly as `junction route eval` does

Configurations: A = route descriptions only (the shipped defaults: task head and route mapping);
B(k) = descriptions + k examples per route from the train split; C(k) = B(k) + a threshold and
margin calibrated on the validation split. Route descriptions live in benchmarks/routing/*.yaml
(written once from label names) or are derived mechanically from label names.

Output: Markdown tables on stdout, progress on stderr, JSON and confusion-matrix PNGs under
benchmarks/results/ (git-ignored). `--floors` checks the quick-run regression floors used by
tests/test_router_regression.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router import evaluate  # noqa: E402
from router.encoder import Encoder, build_encoder  # noqa: E402
from router.preferences import Router, RouterSettings, fresh_verdict  # noqa: E402
from router.taxonomy import load_head  # noqa: E402

SUITES_DIR = Path(__file__).resolve().parent / "routing"
DEFAULT_DATA = ROOT.parent / "shared" / "routing-data"
RESULTS = Path(__file__).resolve().parent / "results"
NONE = "(none)"
# Configurations A and B always route (no similarity threshold, no margin), so they measure
# classification alone; C adds the threshold and margin calibrated on validation data.
NO_ABSTAIN = dict(threshold=-1.0, margin=0.0)

# Regression floors for the --quick run (set below the figures measured when they were chosen; see
# benchmarks/routing/README.md). tests/test_router_regression.py fails when a figure drops below.
QUICK_FLOORS = {
    "clinc_domains/A/accuracy": 0.80,
    "clinc_domains/B20/accuracy": 0.91,
    "clinc_domains/C20/oos_recall": 0.62,
    "clinc_intents/B20/accuracy": 0.90,
    "banking77/B20/accuracy": 0.88,
    "sgd/A/turn_accuracy": 0.88,
    "sgd/A/conversation_accuracy": 0.72,
    "sgd/B20/conversation_accuracy": 0.75,  # the switch bar rises with examples (0.43 on the full set without)
    "mt_bench/A/turn1_accuracy": 0.50,
    "agent/A/accuracy": 0.88,
}
# Ceilings on the same run: generous, to catch a fall back to a slow path, not machine noise.
QUICK_CEILINGS = {"latency/short/p50_ms": 25.0}


def progress(total: int, desc: str) -> Any:
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
    except ImportError:  # pragma: no cover
        class Bar:
            def update(self, n: int = 1) -> None: ...
            def close(self) -> None: ...
            def set_postfix_str(self, s: str) -> None: ...

        return Bar()


def tracked(items: Sequence[Any], desc: str) -> Iterable[Any]:
    """Iterate with a progress bar on stderr."""
    bar = progress(len(items), desc)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def humanise(label: str) -> str:
    return label.replace("_", " ").replace("?", "").strip()


# ---------------------------------------------------------------------------------------------
# Metrics


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    labels = sorted(set(gold) | set(pred))
    f1s = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, pred))
        fp = sum(p == label and g != label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def confused_pairs(gold: Sequence[str], pred: Sequence[str], n: int = 5) -> list[list[Any]]:
    pairs = collections.Counter((g, p) for g, p in zip(gold, pred) if g != p)
    return [[g, p, c] for (g, p), c in pairs.most_common(n)]


def classification(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    gold, pred = list(gold), list(pred)
    inscope = [i for i, g in enumerate(gold) if g != NONE]
    oos = [i for i, g in enumerate(gold) if g == NONE]
    out: dict[str, Any] = {
        "n": len(gold),
        "accuracy": float(np.mean([g == p for g, p in zip(gold, pred)])) if gold else 0.0,
        "macro_f1": macro_f1(gold, pred),
        "confused": confused_pairs(gold, pred),
    }
    if oos:
        out["inscope_accuracy"] = float(np.mean([gold[i] == pred[i] for i in inscope])) if inscope else 0.0
        out["oos_recall"] = float(np.mean([pred[i] == NONE for i in oos]))
        out["none_rate_inscope"] = float(np.mean([pred[i] == NONE for i in inscope])) if inscope else 0.0
    return out


def dialogue_metrics(dialogues: list[tuple[list[str], list[str]]]) -> dict[str, Any]:
    """Turn, span and conversation accuracy, and flapping (changes where the gold route does not)."""
    turns = spans = spans_ok = convs_ok = flaps = steady = 0
    correct = 0
    gold_all: list[str] = []
    pred_all: list[str] = []
    for gold, pred in dialogues:
        gold_all += gold
        pred_all += pred
        turns += len(gold)
        ok = [g == p for g, p in zip(gold, pred)]
        correct += sum(ok)
        convs_ok += all(ok)
        start = 0
        for i in range(1, len(gold) + 1):
            if i == len(gold) or gold[i] != gold[start]:
                spans += 1
                spans_ok += all(ok[start:i])
                start = i
        for i in range(1, len(gold)):
            if gold[i] == gold[i - 1]:
                steady += 1
                flaps += pred[i] != pred[i - 1]
    return {
        "dialogues": len(dialogues),
        "turns": turns,
        "turn_accuracy": correct / max(turns, 1),
        "span_accuracy": spans_ok / max(spans, 1),
        "conversation_accuracy": convs_ok / max(len(dialogues), 1),
        "flap_rate": flaps / max(steady, 1),
        "macro_f1": macro_f1(gold_all, pred_all),
        "confused": confused_pairs(gold_all, pred_all),
        "_gold": gold_all,
        "_pred": pred_all,
    }


def calibrate(scores: np.ndarray, gold: Sequence[str], classes: list[str], n_routes: int,
              base: RouterSettings, keep: float = 0.97) -> tuple[float, float]:  # fmt: skip
    """(`scores`: description similarities per route, `classes`: the routes.)"""
    """Threshold and margin that catch the most out-of-scope queries while keeping at least `keep`
    of the in-scope accuracy obtained without abstention (validation data only)."""
    top_i = np.argsort(-scores, axis=1)
    best = top_i[:, 0]
    top = scores[np.arange(len(scores)), best]
    lead = top - scores[np.arange(len(scores)), top_i[:, 1]]
    names = np.array(classes + [NONE])
    label = np.where(best < n_routes, best, len(classes))
    gold_a = np.array(gold)
    inscope = gold_a != NONE
    oos = ~inscope
    right = names[label] == gold_a
    base_acc = right[inscope].mean()
    choice, best_rec, best_acc = (base.threshold, base.margin), -1.0, -1.0
    for thr in np.arange(0.05, 0.90, 0.01):
        for mar in (0.0, 0.01, 0.02, 0.03, 0.05, 0.08):
            keep_mask = (top >= thr) & (lead >= mar) & (best < n_routes)
            acc = (right & keep_mask)[inscope].mean()
            rec = (~keep_mask)[oos].mean() if oos.any() else 0.0
            if acc >= keep * base_acc and (rec > best_rec or (rec == best_rec and acc > best_acc)):
                choice, best_rec, best_acc = (round(float(thr), 3), mar), rec, acc
    return choice


# ---------------------------------------------------------------------------------------------
# Single-turn suites (CLINC150, BANKING77): scores come from the router's own index and `judge`


def sample_examples(rows: list[dict[str, Any]], label: str, k: int, seed: int) -> dict[str, list[str]]:
    """k training texts per route, drawn at random; for a route made of several intents (CLINC
    domains) drawn round-robin over its intents, as a user writing examples covers each sub-task
    their description lists."""
    by: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        by[r[label]][r.get("intent", r[label])].append(r["text"])
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    for name, groups in sorted(by.items()):
        pools = {g: list(rng.permutation(texts)) for g, texts in sorted(groups.items())}
        order = list(rng.permutation(sorted(pools)))
        picked: list[str] = []
        while len(picked) < k and any(pools.values()):
            for g in order:
                if pools[g] and len(picked) < k:
                    picked.append(str(pools[g].pop()))
        out[name] = picked
    return out


def routes_with(routes: list[dict[str, Any]], examples: dict[str, list[str]] | None) -> list[dict[str, Any]]:
    return [{**r, "models": ["-"], "examples": (examples or {}).get(r["name"], [])} for r in routes]


def predict(router: Router, queries: np.ndarray, texts: Sequence[str], settings: RouterSettings) -> list[str]:
    """Fresh verdicts for pre-computed query vectors (and their texts), through the router's own index."""
    index = router.prepare_sync()
    assert index is not None
    return [v.route if v.route is not None else NONE
            for v in (fresh_verdict(index, a, settings) for a in index.assess(queries, texts))]  # fmt: skip


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = Path(args.data)
        head = load_head()
        self.head = head
        self.encoder = build_encoder(head.encoders, max_tokens=head.max_tokens, cache_size=400_000)
        self.long_encoder = build_encoder(head.encoders, max_tokens=128, cache_size=20_000)  # ablation: 128 tokens
        self.results: dict[str, Any] = {}
        self.confusions: dict[str, tuple[list[str], list[str], str]] = {}
        self.rng_seed = args.seed

    def embed(self, texts: Sequence[str], desc: str, encoder: Any = None) -> np.ndarray:
        encoder = encoder or self.encoder
        texts = list(texts)
        bar = progress(len(texts), f"encode {desc}")
        out = []
        for start in range(0, len(texts), 512):
            out.append(encoder.encode_sync(texts[start : start + 512]))
            bar.update(len(texts[start : start + 512]))
        bar.close()
        return np.concatenate(out) if out else np.zeros((0, encoder.dim), dtype=np.float32)

    def router(self, routes: list[dict[str, Any]], settings: RouterSettings) -> Router:
        router = Router(routes, self.encoder, settings)
        router.prepare_sync()
        return router

    # -- CLINC / BANKING --------------------------------------------------------------------------
    def single_turn_suite(self, name: str, rows: list[dict[str, Any]], label: str, routes: list[dict[str, Any]],
                          has_val: bool, quick_n: tuple[int, int]) -> None:  # fmt: skip
        rng = np.random.default_rng(self.rng_seed)
        train = [r for r in rows if r["split"] == "train" and r[label] != "oos"]
        test_in = [r for r in rows if r["split"] == "test" and r[label] != "oos"]
        test_oos = [r for r in rows if r["split"] == "test" and r[label] == "oos"]
        val = [r for r in rows if r["split"] == "val"] if has_val else []
        if self.args.quick:
            test_in = [test_in[i] for i in sorted(rng.choice(len(test_in), min(quick_n[0], len(test_in)), replace=False))]
            test_oos = [test_oos[i] for i in sorted(rng.choice(len(test_oos), min(quick_n[1], len(test_oos)), replace=False))] if test_oos else []
            if val:
                v_in = [r for r in val if r[label] != "oos"]
                v_oos = [r for r in val if r[label] == "oos"]
                val = [v_in[i] for i in rng.choice(len(v_in), min(600, len(v_in)), replace=False)] + v_oos
        test = test_in + test_oos
        gold = [r[label] if r[label] != "oos" else NONE for r in test]
        gold_in = [r[label] for r in test_in]
        spaces: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

        def vectors(router: Router) -> tuple[np.ndarray, np.ndarray | None]:
            """Test and validation vectors in the space the router scores in (MiniLM for topic routes)."""
            enc = router.query_encoder()
            if id(enc) not in spaces:
                spaces[id(enc)] = (self.embed([r["text"] for r in test], name, enc),
                                   self.embed([r["text"] for r in val], f"{name} val", enc) if val else None)  # fmt: skip
            return spaces[id(enc)]
        gold_v = [r[label] if r[label] != "oos" else NONE for r in val]
        res: dict[str, Any] = {"routes": len(routes), "test_inscope": len(test_in), "test_oos": len(test_oos)}
        base = RouterSettings()
        configs: list[tuple[str, int, bool, bool]] = [("A", 0, False, True), ("A-similarity", 0, False, False)]
        for k in self.args.ks:
            configs.append((f"B{k}", k, False, True))
        if has_val:
            configs.append(("C0", 0, True, True))
            configs += [(f"C{k}", k, True, True) for k in self.args.ks]
        bar = progress(len(configs), name)
        for cfg, k, calibrated, head in configs:
            examples = sample_examples(train, label, k, self.rng_seed) if k else None
            settings = replace(base, use_head=head, **NO_ABSTAIN)
            router = self.router(routes_with(routes, examples), settings)
            q, qv = vectors(router)
            q_in = q[: len(test_in)]
            if not calibrated:
                pred = predict(router, q_in, [r["text"] for r in test_in], settings)
                out = classification(gold_in, pred)
            else:
                assert qv is not None
                index = router.index
                assert index is not None
                thr, mar = calibrate(index.similarity(qv), gold_v, list(index.routes), index.n_routes, base)
                tuned = replace(settings, threshold=thr, margin=mar)
                pred = predict(router, q, [r["text"] for r in test], tuned)
                out = classification(gold, pred)
                out.update(threshold=thr, margin=mar)
                if cfg == f"C{max(self.args.ks)}":
                    self.confusions[name] = (gold, pred, f"{name} {cfg}")
            if not calibrated and cfg == f"B{max(self.args.ks)}" and name not in self.confusions:
                self.confusions[name] = (gold_in, pred, f"{name} {cfg}")
            res[cfg] = out
            bar.update()
        bar.close()
        self.results[name] = res

    def clinc(self, by: str) -> None:
        rows = read_jsonl(self.data / "clinc150.jsonl")
        if by == "domain":
            routes = yaml.safe_load((SUITES_DIR / "clinc_domains.yaml").read_text())["routes"]
            self.single_turn_suite("clinc_domains", rows, "domain", routes, True, (400, 150))
        else:
            domain_of = {r["intent"]: r["domain"] for r in rows if r["intent"] != "oos"}
            routes = [{"name": i, "description": f"{humanise(i)} ({humanise(d)})"} for i, d in sorted(domain_of.items())]
            self.single_turn_suite("clinc_intents", rows, "intent", routes, True, (600, 150))

    def banking(self) -> None:
        rows = read_jsonl(self.data / "banking77.jsonl")
        routes = [{"name": i, "description": f"banking: {humanise(i)}"} for i in sorted({r["intent"] for r in rows})]
        self.single_turn_suite("banking77", rows, "intent", routes, False, (400, 0))

    # -- multi-turn through the real decide() path ------------------------------------------------
    def run_dialogues(self, router: Router, dialogues: list[list[tuple[str, str]]], desc: str,
                      protocol: str = "openai") -> list[tuple[list[str], list[str]]]:  # fmt: skip
        """Each dialogue is [(user text, gold)], with assistant turns in between; one body per turn."""
        out = []
        for n, dialogue in enumerate(tracked(dialogues, desc)):
            messages: list[dict[str, Any]] = []
            gold, pred = [], []
            for i, (text, label) in enumerate(dialogue):
                messages.append({"role": "user", "content": text})
                d = router.decide_sync({"model": "m", "messages": list(messages)}, protocol, f"{desc}-{n}")  # type: ignore[arg-type]
                gold.append(label)
                pred.append(d.route or NONE)
                messages.append({"role": "assistant", "content": f"(reply {i})"})
            out.append((gold, pred))
        return out

    def sgd(self) -> None:
        rows = read_jsonl(self.data / "sgd_dialogues.jsonl")
        routes = yaml.safe_load((SUITES_DIR / "sgd_domains.yaml").read_text())["routes"]
        rng = np.random.default_rng(self.rng_seed)
        dev = [r for r in rows if r["split"] == "dev"]
        train = [r for r in rows if r["split"] == "train"]
        order = rng.permutation(len(train))
        tune = [train[i] for i in order[:300]]
        pool = [train[i] for i in order[300:]]
        if self.args.quick:
            dev = [dev[i] for i in sorted(rng.choice(len(dev), 60, replace=False))]
            tune = tune[:80]

        def convs(ds: list[dict[str, Any]]) -> list[list[tuple[str, str]]]:
            return [[(t["utterance"], t["domain"]) for t in d["turns"] if t["speaker"] == "USER"] for d in ds]

        test_d, tune_d = convs(dev), convs(tune)
        self.embed([t for d in test_d + tune_d for t, _ in d], "sgd")
        # Examples: user turns where a domain becomes active (what a user would write as an example).
        starts: dict[str, list[str]] = collections.defaultdict(list)
        for d in pool:
            prev = None
            for t in d["turns"]:
                if t["speaker"] == "USER":
                    if t["domain"] != prev:
                        starts[t["domain"]].append(t["utterance"])
                    prev = t["domain"]
        res: dict[str, Any] = {"routes": len(routes), "test": "SGD dev split", "tune": "300 SGD train dialogues"}
        base = RouterSettings()
        for cfg in ["A", "A-no-sticky", *[f"B{k}" for k in self.args.ks], f"C{max(self.args.ks)}"]:
            k = int(cfg[1:]) if cfg[0] in "BC" else 0
            examples = None
            if k:
                ex_rng = np.random.default_rng(self.rng_seed)
                examples = {n: list(ex_rng.choice(v, min(k, len(v)), replace=False)) for n, v in sorted(starts.items())}
            settings = replace(base, **NO_ABSTAIN, sticky=cfg != "A-no-sticky")
            if cfg.startswith("C"):
                settings = self.tune_sticky(routes_with(routes, examples), settings, tune_d)
            router = Router(routes_with(routes, examples), self.encoder, settings)
            out = dialogue_metrics(self.run_dialogues(router, test_d, f"sgd {cfg}"))
            if cfg.startswith("C"):
                out.update(switch_threshold=settings.switch_threshold, switch_margin=settings.switch_margin,
                           switch_lead=settings.switch_lead)  # fmt: skip
            self.confusions.setdefault("sgd", (out["_gold"], out["_pred"], f"sgd {cfg}")) if cfg == "A" else None
            res[cfg] = {k2: v for k2, v in out.items() if not k2.startswith("_")}
        self.results["sgd"] = res

    def tune_sticky(self, routes: list[dict[str, Any]], settings: RouterSettings,
                    tune: list[list[tuple[str, str]]]) -> RouterSettings:  # fmt: skip
        best, best_key = settings, (-1.0, -1.0)
        grid = [(t, m, lead) for t in (0.4, 0.5, 0.55) for m in (0.1, 0.15, 0.2, 0.25) for lead in (0.04, 0.08)]
        for thr, mar, lead in tracked(grid, "sgd calibrate"):
            trial = replace(settings, switch_threshold=thr, switch_margin=mar, switch_lead=lead)
            m = dialogue_metrics(self.run_dialogues(Router(routes, self.encoder, trial), tune, "sgd-tune"))
            key = (m["turn_accuracy"] + m["conversation_accuracy"], m["turn_accuracy"])
            if key > best_key:
                best, best_key = trial, key
        return best

    def mt_bench(self) -> None:
        rows = read_jsonl(self.data / "mt_bench.jsonl")
        routes = yaml.safe_load((SUITES_DIR / "mt_bench.yaml").read_text())["routes"]
        self.embed([t for r in rows for t in r["turns"]], "mt_bench")
        res: dict[str, Any] = {"routes": len(routes), "questions": len(rows)}
        base = replace(RouterSettings(), **NO_ABSTAIN)
        for cfg in ("A", "A-similarity", "A-128-tokens", "B5"):
            folds: list[tuple[list[dict[str, Any]], dict[str, list[str]] | None]] = []
            if cfg == "B5":  # two folds: examples from the other half of the questions
                for parity in (0, 1):
                    ex: dict[str, list[str]] = collections.defaultdict(list)
                    for r in rows:
                        if r["question_id"] % 2 != parity and len(ex[r["category"]]) < 5:
                            ex[r["category"]].append(r["turns"][0])
                    folds.append(([r for r in rows if r["question_id"] % 2 == parity], ex))
            else:
                folds.append((rows, None))
            t1g, t1p, dialogues = [], [], []
            for subset, examples in folds:
                settings = replace(base, use_head=cfg != "A-similarity")
                encoder = self.long_encoder if cfg == "A-128-tokens" else self.encoder
                router = Router(routes_with(routes, examples), encoder, settings)
                convs = [[(r["turns"][0], r["category"]), (r["turns"][1], r["category"])] for r in subset]
                for gold, pred in self.run_dialogues(router, convs, f"mt_bench {cfg}"):
                    t1g.append(gold[0])
                    t1p.append(pred[0])
                    dialogues.append((gold, pred))
            m = dialogue_metrics(dialogues)
            res[cfg] = {
                "turn1_accuracy": float(np.mean([g == p for g, p in zip(t1g, t1p)])),
                "turn2_accuracy": float(np.mean([g[1] == p[1] for g, p in dialogues])),
                "conversation_accuracy": m["conversation_accuracy"],
                "macro_f1": macro_f1(t1g, t1p),
                "confused": confused_pairs(t1g, t1p),
            }
            if cfg == "A":
                self.confusions["mt_bench"] = (t1g, t1p, "mt_bench A (turn 1)")
        self.results["mt_bench"] = res

    # -- our agent / chat set ---------------------------------------------------------------------
    def agent(self) -> None:
        """The shared development set through `Router.decide_sync`, one new conversation per item."""
        seed_routes = yaml.safe_load((ROOT / "plano_config.yaml").read_text())["routing_preferences"]
        items = evaluate.read_items(self.data / "agent_routes_dev.jsonl")
        if self.args.quick:
            items = items[::3]
        res: dict[str, Any] = {"items": len(items), "file": "agent_routes_dev.jsonl (development set)"}
        configs = (("A", RouterSettings(), self.encoder), ("A-no-sticky", RouterSettings(sticky=False), self.encoder),
                   ("A-no-markers", RouterSettings(switch_markers=False), self.encoder),
                   ("A-similarity", RouterSettings(use_head=False), self.encoder),
                   ("A-128-tokens", RouterSettings(), self.long_encoder))  # fmt: skip
        for cfg, settings, encoder in configs:
            if self.args.quick and cfg not in ("A", "A-similarity"):
                continue
            router = Router(seed_routes, encoder, settings)
            results = evaluate.run(tracked(items, f"agent {cfg}"),  # type: ignore[arg-type]
                                   lambda i: router.decide_sync(i.body, i.protocol, f"agent-{cfg}-{i.id}"))  # type: ignore[arg-type]
            summary = evaluate.summarise(results)
            en = [r for r in results if r.get("lang") == "en"]
            other = [r for r in results if r.get("lang") != "en"]
            res[cfg] = {"accuracy": summary["accuracy"], "by_kind": summary["by"].get("kind", {}),
                        "by_lang": summary["by"].get("lang", {}), "by_gold": summary["by"].get("gold", {}),
                        "english": evaluate.accuracy(en), "non_english": evaluate.accuracy(other),
                        "per_route": summary["per_route"], "reasons": summary["reasons"],
                        "confused": confused_pairs([r["gold"] for r in results], [r["route"] for r in results])}  # fmt: skip
            if cfg == "A":
                self.confusions["agent"] = ([r["gold"] for r in results], [r["route"] for r in results], "agent_routes_dev A")
                res["misses"] = [{k: r[k] for k in ("id", "kind", "lang", "gold", "route", "reason")} for r in results if not r["correct"]]
        self.results["agent"] = res

    # -- latency ----------------------------------------------------------------------------------
    def latency(self) -> None:
        seed_routes = yaml.safe_load((ROOT / "plano_config.yaml").read_text())["routing_preferences"]
        enc = build_encoder(self.head.encoders, max_tokens=self.head.max_tokens, cache_size=0)  # every decision encodes
        router = Router(seed_routes, enc)
        router.prepare_sync()
        # a topic-style config (routes outside the taxonomy): decided by similarity with both encoders
        topic = Router(yaml.safe_load((SUITES_DIR / "clinc_domains.yaml").read_text())["routes"], enc)
        topic.prepare_sync()
        n = 60 if self.args.quick else 600
        words = ("please review the function below and tell me whether the error handling is right, "
                 "then think about edge cases such as empty input, unicode, very large files and "
                 "concurrent writers; the code reads a config file, parses it and updates a cache ").split()  # fmt: skip

        def text_of(tokens: int, i: int) -> str:
            body = " ".join(words[(i + j) % len(words)] for j in range(tokens * 2))
            while enc.count_tokens(body) > tokens:
                body = body.rsplit(" ", 1)[0]
            return f"{i} {body}"

        out: dict[str, Any] = {"threads": enc.threads, "backend": enc.backend_name}
        sizes = (("short", 16), ("t64", 64), ("t128", 128), ("t256", 256))
        texts = {label: [text_of(tokens, i) for i in range(n)] for label, tokens in sizes}

        async def run() -> dict[tuple[str, str], list[float]]:
            times: dict[tuple[str, str], list[float]] = {}
            for i in range(10):  # warm-up, every size (ONNX Runtime prepares each new input shape once)
                for label, _ in sizes:
                    for r in (router, topic):
                        await r.decide(single_turn_body(texts[label][i] + " warm"), "anthropic")
            for config, r in (("seed", router), ("topic", topic)):  # one config after the other
                for i in range(n):  # sizes interleaved, so machine noise hits every size alike
                    for label, _ in sizes:
                        start = time.perf_counter()
                        await r.decide(single_turn_body(texts[label][i]), "anthropic")
                        times.setdefault((config, label), []).append((time.perf_counter() - start) * 1000)
            return times

        measured = asyncio.run(run())
        out["topic"] = {"encoder": topic.query_encoder().backend_name}
        for label, tokens in sizes:
            for config, into in (("seed", out), ("topic", out["topic"])):
                times = sorted(measured[(config, label)])
                into[label] = {"tokens": min(tokens, enc.max_tokens), "input_tokens": tokens, "p50_ms": pct(times, 50),
                               "p90_ms": pct(times, 90), "p99_ms": pct(times, 99), "n": len(times)}  # fmt: skip

        async def concurrent(c: int = 8, rounds: int = 40) -> dict[str, float]:
            lat: list[float] = []

            async def one(i: int) -> None:
                start = time.perf_counter()
                await router.decide(single_turn_body(text_of(16, 10_000 + i)), "anthropic")
                lat.append((time.perf_counter() - start) * 1000)

            t0 = time.perf_counter()
            for r in range(rounds):
                await asyncio.gather(*(one(r * c + i) for i in range(c)))
            wall = time.perf_counter() - t0
            lat.sort()
            return {"concurrency": c, "decisions_per_s": c * rounds / wall, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}

        out["api"] = api_latency({label: texts[label] for label, _ in sizes})
        before = dict(enc.stats)
        out["concurrent8"] = asyncio.run(concurrent())
        out["concurrent8"]["mean_batch"] = (enc.stats["encoded"] - before["encoded"]) / max(enc.stats["batches"] - before["batches"], 1)
        out["cold_start"] = cold_start()
        if not self.args.quick:
            out["cold_start_first_run"] = cold_start(fresh_cache=True)
        out["loadavg"] = os.getloadavg()
        self.results["latency"] = out
        enc.close()


def api_latency(texts: dict[str, list[str]]) -> dict[str, Any]:
    """Round trips of `POST /routing/v1/messages` (the decision-only API) to `junction serve` with the
    seed config on a loopback port, sizes interleaved, from two keep-alive clients in turn: the lean
    client of the overhead benchmark (what the gateway takes) and httpx (what a Python script sees: httpx
    adds its own request building and parsing); plus the decision time the server reports in each answer."""
    import tempfile

    import httpx

    from overhead import HOST, connect
    from tests.procs import start_gateway

    seed = yaml.safe_load((ROOT / "plano_config.yaml").read_text())
    seed["listeners"][0]["address"] = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="junction-bench-") as tmp:
        config = Path(tmp) / "seed.yaml"
        config.write_text(yaml.safe_dump(seed))
        env = {"DEEPSEEK_API_KEY": "unused", "MOONSHOTAI_API_KEY": "unused"}
        try:
            proc, base = start_gateway(config, env, "--log-level", "warning", "--no-access-log")
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            return {"error": f"gateway did not start: {exc}"}
        port = int(base.rsplit(":", 1)[1])

        def body(text: str) -> bytes:
            return orjson.dumps({"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": text}]})

        def raw_request(text: str) -> bytes:
            data = body(text)
            head = (f"POST /routing/v1/messages HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n")  # fmt: skip
            return head.encode() + data

        async def run() -> dict[str, list[tuple[float, float, float]]]:
            lean = await connect(port, keep_body=True)
            trips: dict[str, list[tuple[float, float, float]]] = {label: [] for label in texts}
            with httpx.Client(base_url=base, timeout=30) as client:
                def post(text: str) -> tuple[float, float]:
                    start = time.perf_counter()
                    r = client.post("/routing/v1/messages", content=body(text), headers={"content-type": "application/json"})
                    r.raise_for_status()
                    return (time.perf_counter() - start) * 1000, float(r.json()["latency_ms"])

                for t in texts["short"][:20]:
                    post(t + " warm-up")
                    await lean.request(raw_request(t + " warm-up lean"))
                n = min(len(v) for v in texts.values())
                for i in range(n):
                    for label in texts:
                        status, _, total, _, _ = await lean.request(raw_request(texts[label][i] + " api"))
                        assert status == 200
                        with_httpx, server = post(texts[label][i] + " api httpx")
                        trips[label].append((total, with_httpx, server))
            lean.close()
            return trips

        with proc:
            trips = asyncio.run(run())
    out: dict[str, Any] = {}
    for label, values in trips.items():
        rt, hx, server = (sorted(v[i] for v in values) for i in range(3))
        out[label] = {"p50_ms": pct(rt, 50), "p90_ms": pct(rt, 90), "p99_ms": pct(rt, 99),
                      "httpx_p50_ms": pct(hx, 50), "httpx_p99_ms": pct(hx, 99),
                      "server_p50_ms": pct(server, 50), "server_p99_ms": pct(server, 99), "n": len(rt)}  # fmt: skip
    return out


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    return round(float(np.percentile(values, p)), 2)


def cold_start(fresh_cache: bool = False) -> dict[str, Any]:
    """A fresh process: import, load the model, build the seed routes, decide once. With
    `fresh_cache` nothing is cached (for MiniLM configs: the ONNX export happens too)."""
    code = (
        "import time,json,yaml;t=time.perf_counter();"
        "from router.preferences import Router;i=time.perf_counter();"
        "r=Router(yaml.safe_load(open('plano_config.yaml'))['routing_preferences']);"
        "d=r.decide_sync({'messages':[{'role':'user','content':'write a poem'}]},'anthropic');e=time.perf_counter();"
        "print(json.dumps({'import_ms':(i-t)*1000,'load_and_build_ms':(e-i)*1000,'total_ms':(e-t)*1000,"
        "'model_load_ms':r.encoder.load_ms,'backend':r.encoder.backend_name}))"
    )
    env = dict(os.environ)
    tmp = None
    if fresh_cache:
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="junction-cold-")
        env["JUNCTION_CACHE_DIR"] = tmp.name
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in data.items()}
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return {"error": str(exc)}
    finally:
        if tmp is not None:
            tmp.cleanup()


# ---------------------------------------------------------------------------------------------
# Request bodies for the agent set


CC_SYSTEM = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch={n};"},
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "You are an interactive CLI tool that helps users with software engineering tasks. "
                             "Use the instructions below and the tools available to you to assist the user."},
]  # fmt: skip
CC_CONTEXT = ("<system-reminder>\nAs you answer the user's questions, you can use the following context:\n"
              "# claudeMd\nCodebase and user instructions are shown below.\n\nContents of /repo/CLAUDE.md:\n"
              "- run `make test` before committing\n- prefer small functions\n</system-reminder>")  # fmt: skip
CC_REMINDER = ("<system-reminder>\nThis is a reminder that your todo list is currently empty. DO NOT mention "
               "this to the user explicitly because they are already aware.\n</system-reminder>")  # fmt: skip
CC_TOOLS = [{"name": "Read", "description": "Reads a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}},
            {"name": "Bash", "description": "Runs a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]  # fmt: skip


def single_turn_body(text: str) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": text}]}


def play_conversation(router: Router, conv: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Send a conversation turn by turn (as the client would) and collect gold/predicted routes."""
    protocol = conv.get("protocol", "anthropic")
    claude_code = bool(conv.get("claude_code"))
    messages: list[dict[str, Any]] = []
    gold: list[str] = []
    pred: list[str] = []
    current = NONE
    tool_n = 0
    for step, turn in enumerate(conv["turns"]):
        if "tool_loop" in turn:
            for _ in range(int(turn["tool_loop"])):
                tool_n += 1
                tid = f"toolu_{tool_n:04d}"
                if protocol == "anthropic":
                    messages.append({"role": "assistant", "content": [
                        {"type": "text", "text": "Let me look at that."},
                        {"type": "tool_use", "id": tid, "name": "Read", "input": {"file_path": f"/repo/f{tool_n}.py"}}]})  # fmt: skip
                    content: Any = [{"type": "tool_result", "tool_use_id": tid, "content": f"def f{tool_n}():\n    return {tool_n}\n"}]
                    if claude_code:
                        content.append({"type": "text", "text": CC_REMINDER})
                    messages.append({"role": "user", "content": content})
                else:
                    messages.append({"role": "assistant", "content": None, "tool_calls": [
                        {"id": tid, "type": "function", "function": {"name": "read", "arguments": json.dumps({"path": f"f{tool_n}.py"})}}]})  # fmt: skip
                    messages.append({"role": "tool", "tool_call_id": tid, "content": f"contents of f{tool_n}.py"})
                gold.append(current)
                pred.append(decide_body(router, messages, protocol, claude_code, step))
            continue
        if turn.get("image_only"):
            img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            content = [img, {"type": "text", "text": CC_REMINDER}] if claude_code else [img]
            if messages and messages[-1]["role"] == "user":
                messages.append({"role": "assistant", "content": "I see."})
            messages.append({"role": "user", "content": content})
            gold.append(current)
            pred.append(decide_body(router, messages, protocol, claude_code, step))
            continue
        if "command" in turn:
            text = (f"<command-message>{turn['command']} is running…</command-message>\n"
                    f"<command-name>/{turn['command']}</command-name>\n<command-args>{turn.get('args', '')}</command-args>")  # fmt: skip
        else:
            text = turn["user"]
        if messages and messages[-1]["role"] in ("user", "tool"):
            messages.append({"role": "assistant", "content": "Done. Anything else?"})
        if claude_code and protocol == "anthropic":
            blocks = [{"type": "text", "text": text}, {"type": "text", "text": CC_REMINDER}]
            if not messages:
                blocks.insert(0, {"type": "text", "text": CC_CONTEXT})
            messages.append({"role": "user", "content": blocks})
        else:
            messages.append({"role": "user", "content": text})
        current = turn["gold"] or NONE
        gold.append(current)
        pred.append(decide_body(router, messages, protocol, claude_code, step))
    return gold, pred


def decide_body(router: Router, messages: list[dict[str, Any]], protocol: str, claude_code: bool, n: int) -> str:
    body: dict[str, Any] = {"model": "claude-opus-4-8", "max_tokens": 32000, "messages": [dict(m) for m in messages]}
    if claude_code and protocol == "anthropic":
        body["system"] = [dict(b, text=b["text"].replace("{n}", f"{n:05x}")) for b in CC_SYSTEM]
        body["tools"] = CC_TOOLS
    elif protocol == "openai":
        body["messages"] = [{"role": "system", "content": "You are a coding agent."}] + body["messages"]
    return router.decide_sync(body, protocol).route or NONE  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Output


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v * 100:.1f}%" if -1.0 <= v <= 1.0 else f"{v:.2f}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    lines = ["| suite | config | accuracy | macro-F1 | OOS recall | in-scope acc | threshold / margin | top confusions |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for suite in ("clinc_domains", "clinc_intents", "banking77"):
        for cfg, m in results.get(suite, {}).items():
            if not isinstance(m, dict):
                continue
            thr = f"{m['threshold']:.2f} / {m['margin']:.2f}" if "threshold" in m else "none (always route)"
            conf = "; ".join(f"{g}→{p} ({c})" for g, p, c in m["confused"][:3])
            lines.append(f"| {suite} | {cfg} | {fmt(m['accuracy'])} | {fmt(m['macro_f1'])} | {fmt(m.get('oos_recall'))} | "
                         f"{fmt(m.get('inscope_accuracy', m['accuracy']))} | {thr} | {conf} |")  # fmt: skip
    out = ["## Single-turn suites", "", *lines, ""]
    lines = ["| suite | config | turn acc | span acc | conversation acc | flap rate | macro-F1 | notes |", "|---|---|---|---|---|---|---|---|"]
    for cfg, m in results.get("sgd", {}).items():
        if isinstance(m, dict):
            note = (f"switch at ≥ {m['switch_threshold']}, ≥ {m['switch_margin']} over the current route, "
                    f"≥ {m['switch_lead']} over the runner-up") if "switch_threshold" in m else ""  # fmt: skip
            lines.append(f"| sgd | {cfg} | {fmt(m['turn_accuracy'])} | {fmt(m['span_accuracy'])} | {fmt(m['conversation_accuracy'])} | "
                         f"{fmt(m['flap_rate'])} | {fmt(m['macro_f1'])} | {note} |")  # fmt: skip
    for cfg, m in results.get("mt_bench", {}).items():
        if isinstance(m, dict):
            lines.append(f"| mt_bench | {cfg} | t1 {fmt(m['turn1_accuracy'])} / t2 {fmt(m['turn2_accuracy'])} | – | "
                         f"{fmt(m['conversation_accuracy'])} | – | {fmt(m['macro_f1'])} | turn 1 / turn 2 |")  # fmt: skip
    out += ["## Multi-turn suites", "", *lines, ""]
    agent = results.get("agent", {})
    kinds = ("single", "multiturn", "agentic", "hard")
    lines = ["| config | overall | " + " | ".join(kinds) + " | English | not English |", "|---|---|---|---|---|---|---|---|"]
    for cfg, m in agent.items():
        if isinstance(m, dict) and "by_kind" in m:
            by = m["by_kind"]
            lines.append(f"| {cfg} | {fmt(m['accuracy'])} | " + " | ".join(fmt(by.get(k, {}).get("accuracy")) for k in kinds)
                         + f" | {fmt(m['english'])} | {fmt(m['non_english'])} |")  # fmt: skip
    if isinstance(agent.get("A"), dict):
        lines += ["", "By language (A): " + ", ".join(f"{k} {fmt(v['accuracy'])} (n={v['n']})" for k, v in agent["A"]["by_lang"].items()),
                  "By expected route (A): " + ", ".join(f"{k} {fmt(v['accuracy'])}" for k, v in agent["A"]["by_gold"].items())]  # fmt: skip
    out += ["## Preference-routing development set (agent_routes_dev.jsonl, seed config)", "", *lines, ""]
    lat = results.get("latency")
    if lat:
        api = lat.get("api", {})
        lines = ["| input | tokens embedded | p50 | p90 | p99 | routing API round trip p50 / p99 | the same with httpx | "
                 "decision time the API reports p50 / p99 |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for key in ("short", "t64", "t128", "t256"):
            m = lat[key]
            a = api.get(key)
            trip = f"{a['p50_ms']} / {a['p99_ms']} ms | {a.get('httpx_p50_ms')} / {a.get('httpx_p99_ms')} ms | " \
                f"{a['server_p50_ms']} / {a['server_p99_ms']} ms" if a else f"{api.get('error', 'not measured')} | – | –"  # fmt: skip
            lines.append(f"| {m['input_tokens']} tokens | {m['tokens']} | {m['p50_ms']} ms | {m['p90_ms']} ms | {m['p99_ms']} ms | {trip} |")
        if "topic" in lat:
            lines += ["", "A topic-style config (CLINC150 domain routes, outside the taxonomy: similarity with MiniLM and USE "
                      "side by side): " + ", ".join(f"{lat['topic'][k]['input_tokens']} tokens {lat['topic'][k]['p50_ms']} / "
                                                    f"{lat['topic'][k]['p99_ms']} ms" for k in ("short", "t64", "t128", "t256"))
                      + " (p50 / p99)."]  # fmt: skip
        c = lat["concurrent8"]
        cs = cold_text(lat["cold_start"])
        first = f" With an empty cache folder (a first start): {cold_text(lat['cold_start_first_run'])}." if "cold_start_first_run" in lat else ""
        out += [f"## Decision latency ({lat['backend']}, {lat['threads']} threads, through `await Router.decide`)", "", *lines, "",
                f"8 concurrent: {c['decisions_per_s']:.0f} decisions/s, p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms, "
                f"mean micro-batch {c['mean_batch']:.1f}. Cold start (new process, seed config): {cs}.{first} "
                f"Load average during the run: {', '.join(f'{x:.2f}' for x in lat['loadavg'])}.", ""]  # fmt: skip
    return "\n".join(out)


def cold_text(cs: dict[str, Any]) -> str:
    if "error" in cs:
        return f"failed ({cs['error']})"
    return (f"{cs['total_ms']:.0f} ms to the first decision (imports {cs['import_ms']:.0f} ms, model load "
            f"{cs['model_load_ms']:.0f} ms, {cs['backend']})")  # fmt: skip


def plot_confusions(confusions: dict[str, tuple[list[str], list[str], str]], out_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no confusion-matrix PNG written "
              "(pip install matplotlib, or the project's 'bench' extra)", file=sys.stderr)  # fmt: skip
        return []
    written = []
    for name, (gold, pred, title) in confusions.items():
        labels = sorted(set(gold) | set(pred), key=lambda x: (x == NONE, x))
        if len(labels) > 40:
            continue
        pos = {label: i for i, label in enumerate(labels)}
        mat = np.zeros((len(labels), len(labels)))
        for g, p in zip(gold, pred):
            mat[pos[g], pos[p]] += 1
        norm = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
        size = max(5.0, 0.45 * len(labels) + 2)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted route")
        ax.set_ylabel("gold route")
        ax.set_title(f"{title} (row-normalised)")
        if len(labels) <= 20:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    if mat[i, j]:
                        ax.text(j, i, int(mat[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        path = out_dir / f"routing_confusion_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def flatten(results: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for suite, configs in results.items():
        if not isinstance(configs, dict):
            continue
        for cfg, m in configs.items():
            if isinstance(m, dict):
                for key, v in m.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        flat[f"{suite}/{cfg}/{key}"] = float(v)
    return flat


def check_floors(results: dict[str, Any]) -> list[str]:
    flat = flatten(results)
    missed = [f"{key}: {flat.get(key, float('nan')):.3f} < floor {floor}" for key, floor in QUICK_FLOORS.items()
              if key.split("/")[0] in results and not flat.get(key, -1) >= floor]  # fmt: skip
    missed += [f"{key}: {flat.get(key, float('nan')):.3f} > ceiling {top}" for key, top in QUICK_CEILINGS.items()
               if key.split("/")[0] in results and not flat.get(key, float("inf")) <= top]  # fmt: skip
    return missed


def environment(encoder: Encoder) -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for mod in ("torch", "onnxruntime", "sentence_transformers", "tokenizers", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions,
            "encoder": encoder.info()}  # fmt: skip


SUITES = ("clinc_domains", "clinc_intents", "banking77", "sgd", "mt_bench", "agent", "latency")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="subsets of every suite (regression run, < 2 min)")
    ap.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated subset of {','.join(SUITES)}")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder with the routing datasets")
    ap.add_argument("--out", default=str(RESULTS), help="where the JSON and PNGs go")
    ap.add_argument("--ks", default="5,20", help="examples per route for configurations B and C")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--floors", action="store_true", help="exit 1 when a quick-run regression floor is missed")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    args.ks = [int(k) for k in str(args.ks).split(",") if k]
    wanted = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = set(wanted) - set(SUITES)
    if unknown:
        ap.error(f"unknown suites: {', '.join(sorted(unknown))}")
    if not Path(args.data).is_dir() and any(s not in ("agent", "latency") for s in wanted):
        ap.error(f"dataset folder not found: {args.data} (pass --data)")
    bench = Bench(args)
    started = time.perf_counter()
    steps: dict[str, Callable[[], None]] = {
        "clinc_domains": lambda: bench.clinc("domain"), "clinc_intents": lambda: bench.clinc("intent"),
        "banking77": bench.banking, "sgd": bench.sgd, "mt_bench": bench.mt_bench, "agent": bench.agent,
        "latency": bench.latency,
    }  # fmt: skip
    bar = progress(len(wanted), "suites")
    for suite in wanted:
        bar.set_postfix_str(suite)
        t0 = time.perf_counter()
        steps[suite]()
        if isinstance(bench.results.get(suite), dict):
            bench.results[suite]["seconds"] = round(time.perf_counter() - t0, 1)
        bar.update()
    bar.close()
    report = markdown(bench.results)
    print(report)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "quick": args.quick, "seed": args.seed, "ks": args.ks, "seconds": round(time.perf_counter() - started, 1),
        "environment": environment(bench.encoder), "results": bench.results,
    }  # fmt: skip
    name = "routing_accuracy_quick.json" if args.quick else "routing_accuracy.json"
    (out_dir / name).write_text(json.dumps(payload, indent=2, default=str))
    pngs = [] if args.no_plot else plot_confusions(bench.confusions, out_dir)
    print(f"\nwrote {out_dir / name}" + (f" and {len(pngs)} confusion matrices" if pngs else ""), file=sys.stderr)
    print(f"total {payload['seconds']} s", file=sys.stderr)
    if args.floors:
        missed = check_floors(bench.results)
        for line in missed:
            print(f"FLOOR MISSED {line}", file=sys.stderr)
        return 1 if missed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
