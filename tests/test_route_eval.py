"""`junction route eval FILE.jsonl` and `junction route --explain`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from router import evaluate

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "routing-data" / "agent_routes_dev.jsonl"
JUNCTION = [sys.executable, "-m", "gateway.cli"]


def test_items_in_every_shape_are_read(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "text": "write a haiku", "gold": "creative_writing", "lang": "en"},
        {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}], "route": None},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "prove it"}]}], "label": "none", "kind": "single"},
        {"input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "review a.py"}]}],
         "instructions": "Be brief.", "gold": "code_review"},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    items = evaluate.read_items(path)
    assert [i.protocol for i in items] == ["anthropic", "openai", "anthropic", "responses"]
    assert [i.gold for i in items] == ["creative_writing", "none", "none", "code_review"]
    assert items[3].body == {"input": lines[3]["input"], "instructions": "Be brief."} and items[3].fields == {}
    assert items[0].fields == {"lang": "en"} and items[2].fields == {"kind": "single"}
    with pytest.raises(evaluate.EvalError, match="line 1"):
        evaluate.parse_item({"text": "no gold"}, 1)


def test_summary_counts_and_confusion() -> None:
    rows = [{"gold": "a", "route": "a", "correct": True, "reason": "matched", "lang": "en"},
            {"gold": "a", "route": "none", "correct": False, "reason": "unrouted", "lang": "zh"},
            {"gold": "none", "route": "none", "correct": True, "reason": "unrouted", "lang": "zh"}]  # fmt: skip
    s = evaluate.summarise(rows)
    assert s["accuracy"] == pytest.approx(2 / 3, abs=1e-4) and s["labels"] == ["a", "none"]
    assert s["confusion"] == [[1, 1], [0, 1]] and s["by"]["lang"]["zh"]["accuracy"] == 0.5
    assert s["per_route"]["a"]["recall"] == 0.5 and s["per_route"]["none"]["precision"] == 0.5
    assert "confusion" in evaluate.table(s)


@pytest.mark.timeout(300)
def test_route_eval_on_the_development_set(tmp_path: Path) -> None:
    if not DEV.exists():
        pytest.skip(f"the routing development set is not at {DEV}")
    proc = subprocess.run([*JUNCTION, "route", "eval", str(DEV), "--out", str(tmp_path), "--config", str(ROOT / "plano_config.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "by kind:" in proc.stdout and "by lang:" in proc.stdout and "confusion" in proc.stdout
    summary = json.loads((tmp_path / "agent_routes_dev.summary.json").read_text())
    assert summary["n"] == 400 and set(summary["by"]["kind"]) == {"single", "multiturn", "agentic", "hard"}
    assert summary["accuracy"] > 0.8  # far above the 30 % of always answering "none"
    png = (tmp_path / "agent_routes_dev.confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    decisions = (tmp_path / "agent_routes_dev.decisions.jsonl").read_text().splitlines()
    assert len(decisions) == 400 and {"id", "gold", "route", "reason", "kind", "lang"} <= set(json.loads(decisions[0]))


def test_route_explain_names_task_classes_and_training_neighbours(tmp_path: Path) -> None:
    env = {"JUNCTION_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([*JUNCTION, "route", "--explain", "--json", "--config", str(ROOT / "plano_config.yaml"),
                           "prove that the sum of two even numbers is even"], cwd=ROOT, capture_output=True, text=True,
                          timeout=200, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["decision"]["route"] == "complex_reasoning"
    assert max(out["tasks"], key=out["tasks"].get) == "proof"
    assert len(out["nearest_training"]) == 5 and all("task" in n for n in out["nearest_training"])
    assert out["routes"]["complex_reasoning"]["decided_by"] == "task_head"
