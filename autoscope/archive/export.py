"""The champion's figures as files DVC reads: `metrics.json`, `curves.csv`, the confusion matrix.

`autoscope runs export <recipe> --out <dir>` (the second command of a workspace's train stage)
writes them for the run `run=best` would archive, so `dvc metrics show`, `dvc exp show` and
`dvc plots show` see the same model as the registry.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from autoscope.atomic import write_text
from autoscope.models.tracking import KEPT, kept_metrics

CURVE_PREFIXES = ("train/", "val/", "lr")


def curves_csv(client: Any, run_id: str, keys: list[str]) -> str:
    """The per-step history of the run's curve metrics as CSV (`step,<key>,...`)."""
    rows: dict[int, dict[str, float]] = {}
    names = sorted(k for k in keys if k.startswith(CURVE_PREFIXES))
    kept = []
    for key in names:
        hist = client.get_metric_history(run_id, key)
        if not hist:
            continue
        kept.append(key)
        for m in hist:
            rows.setdefault(int(m.step), {})[key] = float(m.value)
    lines = [",".join(["step", *kept])]
    for step in sorted(rows):
        vals = rows[step]
        lines.append(",".join([str(step), *(f"{vals[k]:.6g}" if k in vals else "" for k in kept)]))
    return "\n".join(lines) + "\n"


def _placeholder_png(path: Path, text: str) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 60), "white")
    ImageDraw.Draw(img).text((10, 20), text, fill="black")
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def export_run(
    client: Any, run: Any, out: Path, train_runs: Path, train_dir: Path | None = None
) -> dict[str, Any]:
    """Write `metrics.json`, `curves.csv` and `confusion_matrix.png` of `run` into `out`.

    Args:
        client: MLflow client of the project's store.
        run: the MLflow run (the recipe's champion).
        out: the report folder (made if missing).
        train_runs: `outputs/<project>/train/runs` (the run folders with their pictures).
        train_dir: also record the run id there (`run.json`), the train stage's own output.
    """
    rid = run.info.run_id
    out.mkdir(parents=True, exist_ok=True)
    metrics = dict(sorted(kept_metrics(run.data.metrics).items()))
    write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    curves = [k for k in sorted(run.data.metrics) if not k.startswith(KEPT)]
    write_text(out / "curves.csv", curves_csv(client, rid, curves))
    png = train_runs / rid / "confusion_matrix.png"  # drawn on the test split by the run
    if png.is_file():
        tmp = out / ".confusion_matrix.png.tmp"
        shutil.copyfile(png, tmp)
        tmp.replace(out / "confusion_matrix.png")
    else:
        _placeholder_png(out / "confusion_matrix.png", f"run {rid[:8]}: no test split")
    record = {"run_id": rid, "dataset_version": run.data.tags.get("dataset_version")}
    if train_dir is not None:
        train_dir.mkdir(parents=True, exist_ok=True)
        write_text(train_dir / "run.json", json.dumps(record, indent=1) + "\n")
    return {**record, "out": str(out), "metrics": len(metrics)}
