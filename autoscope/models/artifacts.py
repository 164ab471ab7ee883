"""Files a training run leaves: `model.pt` + `spec.json` (the contract) and its pictures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoscope.atomic import atomic_file, write_json
from autoscope.models import figures


def save_model(run_dir: Path, model: torch.nn.Module, spec: dict) -> tuple[Path, Path]:
    """Write `model.pt` (a CPU state dict) and `spec.json`, each atomically."""
    weights, spec_path = run_dir / "model.pt", run_dir / "spec.json"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_file(weights) as tmp:
        torch.save(state, tmp)
    write_json(spec_path, spec)
    return weights, spec_path


def metric_key(text: str) -> str:
    """A class name made safe for an MLflow metric key."""
    return re.sub(r"[^0-9A-Za-z_\-. ]", "_", text)


def test_report(
    module: Any, images: torch.Tensor, names: list[str], out_dir: Path, grid: int, seed: int
) -> tuple[dict[str, float], list[Path]]:
    """Confusion matrix, per-class metrics and a sample grid from the module's test outputs.

    Args:
        module: the PatchClassifierModule after `trainer.test` (holds preds, targets, probs).
        images: the test patches (uint8 `[N,H,W,3]`, same order as the test loader).
        names: class names (index = label).
        out_dir: folder for the PNGs and `per_class.json`.
        grid: number of patches in the sample grid.
        seed: picks the sample patches reproducibly.

    Returns:
        per-class metrics as flat `test/<metric>/<class>` values, and the files written.
    """
    preds = torch.cat(module.test_preds).numpy()
    targets = torch.cat(module.test_targets).numpy()
    probs = torch.cat(module.test_probs).numpy()
    cm = figures.confusion_matrix(targets, preds, len(names))
    per = figures.per_class_metrics(cm, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [figures.plot_confusion(cm, names, out_dir / "confusion_matrix.png", "test")]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(targets), size=min(grid, len(targets)), replace=False))
    files.append(
        figures.plot_samples(
            images[torch.as_tensor(pick)].numpy(),
            targets[pick],
            preds[pick],
            probs[pick, preds[pick]],
            names,
            out_dir / "sample_predictions.png",
        )
    )
    table = write_json(
        out_dir / "per_class.json", {"confusion_matrix": cm.tolist(), "classes": per}
    )
    files.append(table)
    flat = {
        f"test/{m}/{metric_key(c)}": v
        for c, row in per.items()
        for m, v in row.items()
        if m != "support"
    }
    return flat, files
