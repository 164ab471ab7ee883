"""The AutoML benchmark's own code at toy size: the synthetic tiles, a 1-minute budget each.

`benchmarks/automl.py --source synthetic` runs exactly what the LC25000 benchmark runs (held-out
groups, dataset build, one default run, the budgeted sweep with its retrain) and writes the same
JSON, so the figures the G1 check reads cannot silently break.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("single_test_acc", "sweep_test_acc", "val_test_gap", "trials_complete", "trials_pruned",
        "budget_minutes", "minutes_used")  # fmt: skip


def test_toy_automl_benchmark_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "automl.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "automl.py"), "--source", "synthetic",
        "--budget", "1.0", "--root", str(tmp_path / "bench"), "--out", str(out),
        "--extra", "dataset.patch_px=48", "model.input_px=null", "trainer.threads=2",
    ]  # fmt: skip
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert all(res.get(k) is not None for k in KEYS), res
    assert res["trials_complete"] >= 1 and res["final_run_id"]
    assert 0.0 <= res["single_test_acc"] <= 1.0 and 0.0 <= res["sweep_test_acc"] <= 1.0
    # the sweep kept its budget: 1 min plus start-up (the benchmark times the whole command)
    assert res["minutes_used"] <= 1.0 + 0.5, res
    assert "| sweep: final model (retrained) |" in p.stdout
    study = json.loads((tmp_path / "bench/outputs/hpo/bench/study.json").read_text())
    assert study["final"]["trial"] == study["best_trial"]
    assert "trainer.fit_on='train+val'" in study["final"]["overrides"]
