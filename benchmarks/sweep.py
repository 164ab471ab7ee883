"""Two workers against one: the same Optuna sweep on the demo dataset, through Hydra launchers.

Runs `autoscope train demo -m hpo=small` twice in this workspace (the demo dataset must be built:
`make demo` or `autoscope dataset build demo`), once with the basic launcher (one trial at a time)
and once with `hydra/launcher=joblib hydra.launcher.n_jobs=2` (two trials side by side), each in
its own temporary Optuna/MLflow storage, and prints the wall times and their ratio. Each trial uses
one torch thread, so two workers fit two cores.

    python benchmarks/sweep.py [--trials 4] [--minutes 0.4] [--out outputs/bench/sweep.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AUTOSCOPE = [sys.executable, "-m", "autoscope.cli"]


def sweep(name: str, trials: int, minutes: float, extra: list[str], state: Path) -> float:
    """Wall seconds of one sweep (its own study and stores under `state`)."""
    cmd = [
        *AUTOSCOPE, "train", "demo", "-m", "hpo=small", f"hpo.study_name=bench-{name}",
        f"hpo.n_trials={trials}", f"hpo.fixed.trainer.max_minutes={minutes}",
        "hpo.mlflow=false", "trainer.threads=1", "logger.log_pictures=false",
        f"paths.state={state}", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"sweep '{name}' failed: {(out.stderr or out.stdout).strip().splitlines()[-1]}")
    done = [ln for ln in out.stdout.splitlines() if "] best " in ln]
    print(f"  {name}: {seconds:.1f}s  {done[-1].split('] ', 1)[1] if done else ''}", flush=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=0.4, help="per-trial training cap")
    ap.add_argument("--out", default="outputs/bench/sweep.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"sweep of {a.trials} trials ({a.minutes} min cap each) on the demo dataset:")
        one = sweep("one", a.trials, a.minutes, [], Path(tmp) / "one")
        two = sweep(
            "two", a.trials, a.minutes,
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], Path(tmp) / "two",
        )  # fmt: skip
    result = {"trials": a.trials, "one_worker_s": one, "two_workers_s": two, "speedup": one / two}
    print(f"two workers / one worker: {one / two:.2f}x faster ({one:.0f}s -> {two:.0f}s)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
