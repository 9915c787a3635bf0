"""Routing accuracy on a user's own labelled traffic (`junction route eval FILE.jsonl`).

One JSON object per line, in any of these shapes, with the expected route in `gold` (or `route` or
`label`; null, "" or "none" for "no route"):

* an Anthropic Messages body: `{"messages": [...], "system": ..., "gold": "code_review"}`;
* an OpenAI Chat Completions body: `{"messages": [{"role": "system", ...}, ...], "gold": ...}` (read as
  OpenAI when a message has role system/developer/tool or `tool_calls`, or when `"protocol": "openai"`);
* an OpenAI Responses body: `{"input": "..." or [items], "instructions": ..., "gold": ...}`;
* plain text: `{"text": "...", "gold": ...}`.

Every item is decided as a new conversation (its own session), exactly as the gateway would decide
it. Accuracy is reported overall and by every other short string field the items carry (`kind`,
`lang`, ...), with per-route precision and recall and a confusion matrix.

Pure functions except `read_items` and `write_outputs`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

NONE = "none"
GOLD_KEYS = ("gold", "route", "label")
SKIP_FIELDS = {"id", "text", "messages", "system", "gold", "route", "label", "protocol", "input", "instructions",
               "prompt_cache_key", "tools", "model"}
MAX_GROUPS = 50  # a field with more distinct values than this is an id, not a group


class EvalError(ValueError):
    pass


@dataclass(frozen=True)
class Item:
    id: str
    body: dict[str, Any]
    protocol: str  # "anthropic" | "openai" | "responses"
    gold: str
    fields: dict[str, str]


def _label(value: Any) -> str:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", NONE, "null", "default")):
        return NONE
    return str(value)


def _is_openai(row: dict[str, Any]) -> bool:
    if row.get("protocol") in ("openai", "chat"):
        return True
    if row.get("protocol") == "anthropic":
        return False
    for m in row.get("messages") or []:
        if isinstance(m, dict) and (m.get("role") in ("system", "developer", "tool") or "tool_calls" in m):
            return True
    return False


def parse_item(row: Any, n: int) -> Item:
    """One line of the file as an item (raises EvalError with the line number)."""
    if not isinstance(row, dict):
        raise EvalError(f"line {n}: expected a JSON object")
    key = next((k for k in GOLD_KEYS if k in row), None)
    if key is None:
        raise EvalError(f"line {n}: no expected route (one of {', '.join(GOLD_KEYS)})")
    if isinstance(row.get("messages"), list):
        protocol = "openai" if _is_openai(row) else "anthropic"
        body = {k: row[k] for k in ("messages", "system") if k in row}
    elif isinstance(row.get("input"), (str, list)):
        protocol = "responses"
        body = {k: row[k] for k in ("input", "instructions", "prompt_cache_key") if k in row}
    elif isinstance(row.get("text"), str):
        protocol, body = "anthropic", {"messages": [{"role": "user", "content": row["text"]}]}
    else:
        raise EvalError(f"line {n}: expected `messages` (a list), `input` (a Responses input) or `text` (a string)")
    fields = {k: v for k, v in row.items() if k not in SKIP_FIELDS and isinstance(v, str)}
    return Item(str(row.get("id", n)), body, protocol, _label(row[key]), fields)


def read_items(path: str | Path) -> list[Item]:
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise EvalError(f"line {n}: not JSON ({exc})") from exc
        items.append(parse_item(row, n))
    if not items:
        raise EvalError("no items")
    return items


def run(items: Sequence[Item], decide: Callable[[Item], Any]) -> list[dict[str, Any]]:
    """Decide every item; `decide(item)` returns a router Decision."""
    out = []
    for item in items:
        d = decide(item)
        pred = d.route or NONE
        out.append({"id": item.id, "gold": item.gold, "route": pred, "correct": pred == item.gold, "reason": d.reason,
                    "tasks": d.tasks, "switch": d.switch, "text": d.text[:300], **item.fields})  # fmt: skip
    return out


def accuracy(rows: Sequence[dict[str, Any]]) -> float:
    return sum(r["correct"] for r in rows) / len(rows) if rows else 0.0


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall accuracy, accuracy by every grouping field, per-route precision/recall, confusion."""
    labels = sorted({r["gold"] for r in results} | {r["route"] for r in results}, key=lambda x: (x == NONE, x))
    fields = sorted({k for r in results for k, v in r.items() if k not in ("id", "gold", "route", "correct", "reason",
                     "tasks", "switch", "text") and isinstance(v, str)})  # fmt: skip
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for f in ["gold", *fields]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in results:
            if isinstance(r.get(f), str):
                groups[r[f]].append(r)
        if 1 < len(groups) <= MAX_GROUPS or f == "gold":
            by[f] = {g: {"n": len(rs), "accuracy": round(accuracy(rs), 4)} for g, rs in sorted(groups.items())}
    confusion = Counter((r["gold"], r["route"]) for r in results)
    per_route = {}
    for label in labels:
        tp = confusion[(label, label)]
        predicted = sum(v for (g, p), v in confusion.items() if p == label)
        actual = sum(v for (g, p), v in confusion.items() if g == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_route[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "n": actual}
    return {
        "n": len(results),
        "accuracy": round(accuracy(results), 4),
        "by": by,
        "per_route": per_route,
        "labels": labels,
        "confusion": [[confusion[(g, p)] for p in labels] for g in labels],
        "reasons": dict(Counter(r["reason"] for r in results).most_common()),
    }


def table(summary: dict[str, Any]) -> str:
    """The summary as plain-text tables."""
    lines = [f"items: {summary['n']}   accuracy: {summary['accuracy']:.1%}", ""]
    for field, groups in summary["by"].items():
        lines.append(f"by {field}:")
        width = max(len(g) for g in groups)
        for g, v in groups.items():
            lines.append(f"  {g:<{width}}  {v['accuracy']:7.1%}  (n={v['n']})")
        lines.append("")
    labels = summary["labels"]
    lines.append("per route:           precision  recall     f1")
    for label in labels:
        v = summary["per_route"][label]
        lines.append(f"  {label:<18} {v['precision']:9.1%} {v['recall']:7.1%} {v['f1']:6.2f}")
    lines.append("")
    lines.append("confusion (rows: expected, columns: decided):")
    width = max(len(x) for x in labels)
    short = [x[:12] for x in labels]
    lines.append(" " * (width + 2) + " ".join(f"{s:>12}" for s in short))
    for label, row in zip(labels, summary["confusion"]):
        lines.append(f"  {label:<{width}}" + " ".join(f"{c:>12}" for c in row))
    lines.append("")
    lines.append("reasons: " + ", ".join(f"{k} {v}" for k, v in summary["reasons"].items()))
    return "\n".join(lines)


def confusion_png(summary: dict[str, Any], path: str | Path, title: str = "routing confusion") -> None:
    """The confusion matrix as a PNG heat map (counts in the cells, row-normalised colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = summary["labels"]
    counts = np.array(summary["confusion"], dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("decided route")
    ax.set_ylabel("expected route")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(f"{title}\n{summary['n']} items, accuracy {summary['accuracy']:.1%}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the expected route")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: Sequence[dict[str, Any]], summary: dict[str, Any], out_dir: str | Path, stem: str) -> dict[str, str]:
    """`<stem>.decisions.jsonl`, `<stem>.summary.json` and `<stem>.confusion.png` in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"decisions": out / f"{stem}.decisions.jsonl", "summary": out / f"{stem}.summary.json",
             "confusion": out / f"{stem}.confusion.png"}  # fmt: skip
    paths["decisions"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
    paths["summary"].write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    confusion_png(summary, paths["confusion"], title=stem)
    return {k: str(v) for k, v in paths.items()}
