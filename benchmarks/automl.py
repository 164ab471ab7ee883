"""AutoML against one default run: the same budget, held-out test accuracy of each.

On the LC25000 lung development pool (`../shared/data/lc25000-lung-dev`, `images.csv` with
`path,label,group`), about 20 % of the groups (stratified by class, seeded) are held out as the
test split; the rest is split by the dataset stage (groups, class-stratified). Then, through the
CLI exactly as a user runs it:

1. one default training run: `autoscope train <recipe> hpo=none trainer.max_minutes=<budget>`;
2. the sweep: `autoscope train <recipe> -m hpo=default hpo.budget_minutes=<budget>`
   (exploration, pruning, then the winner retrained on train+val).

It prints both test accuracies, the sweep's val-test gap (its best trial's validation against
its held-out test), the trials run and pruned and the minutes used, and writes them to
`outputs/bench/automl.json`. Everything lives under `outputs/bench/automl/` (own data, MLflow,
Optuna). Not part of `make test`; `--source synthetic` runs the same code on a small, harder
variant of the synthetic tiles (the toy-size run the tests use).

    python benchmarks/automl.py [--budget 30] [--source ../shared/data/lc25000-lung-dev]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AUTOSCOPE = [sys.executable, "-m", "autoscope.cli"]
LC25000 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lc25000-lung-dev"
COLOURS = ("#d62728", "#2ca02c", "#1f77b4", "#9467bd", "#ff7f0e")


def held_out_csv(source: Path, out: Path, test_share: float, seed: int) -> list[str]:
    """Copy `images.csv` with absolute paths and `split=test` on a seeded share of the groups.

    The test groups are drawn per class (each group has one label), so the test split keeps the
    class balance. Returns the class names.
    """
    rows = list(csv.DictReader((source / "images.csv").open()))
    by_class: dict[str, list[str]] = {}
    for r in rows:
        groups = by_class.setdefault(r["label"], [])
        if r["group"] not in groups:
            groups.append(r["group"])
    rng = np.random.default_rng(seed)
    test = set()
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        k = max(1, round(test_share * len(groups)))
        test.update(rng.choice(groups, k, replace=False).tolist())
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "split"])
        for r in rows:
            p = Path(r["path"])
            w.writerow([p if p.is_absolute() else (source / p).resolve(), r["label"], r["group"],
                        "test" if r["group"] in test else ""])  # fmt: skip
    return sorted(by_class)


def write_recipe(path: Path, images: Path, classes: list[str], root: Path, val: float) -> None:
    """The benchmark's recipe: the defaults, its own project, the CSV source, its own stores."""
    rest = 1.0 - 0.2
    lines = [
        "# Written by benchmarks/automl.py: the project's defaults on a pre-cut image set.",
        "defaults:",
        "  - config",
        "  - _self_",
        "project:",
        "  name: automl-bench",
        "  product: autoscope-bench",
        "  organ: lung",
        "  task: tissue_classification",
        "  classes:",
        *[f'    - {{name: {c}, color: "{COLOURS[i % 5]}"}}' for i, c in enumerate(classes)],
        "paths:",
        f"  data: {root}/data",
        f"  outputs: {root}/outputs",
        f"  state: {root}/state",
        "dataset:",
        "  name: bench",
        "  sources:",
        f"    - {{type: csv, path: {images}}}",
        "  split:",
        "    by: group",
        f"    fractions: {{train: {rest * (1 - val):.4f}, val: {rest * val:.4f}, test: 0.2}}",
    ]
    path.write_text("\n".join(lines) + "\n")


def run(cmd: list[str], log: Path) -> tuple[float, str]:
    """Run a CLI command, echo its lines, keep them in `log`; exit on failure."""
    print("$ " + " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            if not line.startswith(("  warnings.warn", "/")):
                print("  " + line.rstrip(), flush=True)
    log.write_text("".join(lines))
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd[2:])} (log: {log})")
    return time.perf_counter() - t0, "".join(lines)


def stage_result(text: str) -> dict:
    """The last `train done in ...: key=value, ...` line of a run, as numbers."""
    for line in reversed(text.splitlines()):
        if " done in " in line and ": " in line:
            out: dict = {}
            for part in line.split(": ", 1)[1].split(", "):
                k, _, v = part.partition("=")
                try:
                    out[k.strip()] = float(v)
                except ValueError:
                    out[k.strip()] = v.strip()
            return out
    return {}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=str(LC25000), help="folder with images.csv, or 'synthetic'")
    ap.add_argument("--budget", type=float, default=30.0, help="minutes for each side")
    ap.add_argument("--test-share", type=float, default=0.2, help="share of groups held out")
    ap.add_argument("--val", type=float, default=0.2, help="share of the rest for validation")
    ap.add_argument("--seed", type=int, default=7, help="seed of the held-out groups")
    ap.add_argument("--root", default="outputs/bench/automl", help="the benchmark's own stores")
    ap.add_argument("--out", default="outputs/bench/automl.json")
    ap.add_argument("--extra", nargs="*", default=[], help="overrides for both runs")
    ap.add_argument("--phases", default="dataset,single,sweep",
                    help="what to (re)run; the rest is read from the logs in --root")  # fmt: skip
    a = ap.parse_args(argv)
    phases = set(a.phases.split(","))
    root = Path(a.root).resolve()
    if "dataset" in phases:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    source = Path(a.source)
    if a.source == "synthetic":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from synthetic_tiles import write_tiles

        source = write_tiles(root / "tiles")
    images = root / "images.csv"
    classes = held_out_csv(source, images, a.test_share, a.seed)
    recipe = root / "recipe.yaml"
    write_recipe(recipe, images, classes, root, a.val)
    base = [*AUTOSCOPE, "train", str(recipe)]
    if "dataset" in phases:
        run([*AUTOSCOPE, "dataset", "build", str(recipe), *a.extra], root / "dataset.log")
    if "single" in phases:
        single_s, out = run(
            [*base, *a.extra, "hpo=none", f"trainer.max_minutes={a.budget}"], root / "single.log"
        )
        (root / "single.seconds").write_text(f"{single_s:.1f}\n")
    single_s = float((root / "single.seconds").read_text())
    single = stage_result((root / "single.log").read_text())
    small = []  # a toy budget: trial caps scaled down with it (the default caps suit 30 min)
    if a.budget < 10:
        small = [
            f"hpo.trial_minutes={a.budget / 10:.3f}",
            f"hpo.min_trial_minutes={a.budget / 30:.3f}",
        ]
    if "sweep" in phases:
        sweep = [*base, "-m", *a.extra, "hpo=default", f"hpo.budget_minutes={a.budget}"]
        sweep_s, _ = run([*sweep, "hpo.study_name=bench", *small], root / "sweep.log")
        (root / "sweep.seconds").write_text(f"{sweep_s:.1f}\n")
    sweep_s = float((root / "sweep.seconds").read_text())
    study = json.loads((root / "outputs" / "hpo" / "bench" / "study.json").read_text())
    final = study.get("final") or {}
    result = {
        "source": str(a.source),
        "budget_minutes": a.budget,
        "single_test_acc": single.get("test/acc"),
        "single_val_acc": single.get("val/acc"),
        "single_epochs": single.get("epochs"),
        "single_minutes": round(single_s / 60, 2),
        "sweep_test_acc": final.get("test/acc", study.get("best_test_value")),
        "sweep_best_trial_val_acc": study.get("best_value"),
        "sweep_best_trial_test_acc": study.get("best_test_value"),
        "val_test_gap": study.get("val_test_gap"),
        "trials_complete": study.get("n_complete"),
        "trials_pruned": study.get("n_pruned"),
        "trials_failed": study.get("n_failed"),
        "minutes_used": round(sweep_s / 60, 2),  # the whole command, set-up included
        "sweep_budget_minutes_used": (study.get("budget") or {}).get("minutes_used"),
        "final_run_id": study.get("final_run_id"),
        "best_params": study.get("best_params"),
    }
    print("\n| run | minutes | val acc | held-out test acc |\n|---|---|---|---|")
    print(f"| one default run | {result['single_minutes']} | {single.get('val/acc', 0):.4f} | "
          f"{single.get('test/acc', 0):.4f} |")  # fmt: skip
    print(f"| sweep: best trial | | {study.get('best_value') or 0:.4f} | "
          f"{study.get('best_test_value') or 0:.4f} |")  # fmt: skip
    print(f"| sweep: final model (retrained) | {result['minutes_used']} | | "
          f"{result['sweep_test_acc'] or 0:.4f} |")  # fmt: skip
    print(f"trials: {result['trials_complete']} complete, {result['trials_pruned']} pruned; "
          f"val-test gap {result['val_test_gap']}; sweep minus single "
          f"{(result['sweep_test_acc'] or 0) - (result['single_test_acc'] or 0):+.4f}")  # fmt: skip
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
