"""The training kit of tissue segmentation (`autoscope.tasks`: family `segmentation`).

The model is a `PatchClassifier` around a dense net (`seg_nets`), so archiving, loading
(`PatchClassifier.from_files`) and serving work as for classification; the data module, the
LightningModule, the spec's extra `output` block and the test report are this family's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.models.kit import TrainKit

KIT = TrainKit(
    data_module="autoscope.models.seg_data:SegDataModule",
    build_model="autoscope.models.build:build_classifier",
    build_module="autoscope.models.segmentation:build_module",
    make_spec="autoscope.models.segmentation:make_spec",
    test_report="autoscope.models.segmentation:test_report",
)


def build_module(model: Any, **kwargs: Any) -> Any:
    """`build.build_module` with the `SegModule`; a loss with `fit` (balanced class weights) is
    fitted to the pixel counts."""
    from autoscope.models.build import build_module as build

    return build(model, **kwargs, module="autoscope.models.seg_module:SegModule")


def make_spec(
    arch: Mapping[str, Any], classes: Sequence[Any], mpp: float | None, patch_px: int
) -> dict:
    """`classifier.make_spec` plus `output: {kind: dense, ignore_index: 255}`."""
    from autoscope.models.classifier import make_spec as base
    from autoscope.models.seg_losses import IGNORE

    spec = base(arch, classes, mpp, patch_px)
    spec["output"] = {"kind": "dense", "ignore_index": IGNORE}
    return spec


def triptychs(
    images: np.ndarray, truth: np.ndarray, pred: np.ndarray, colors: np.ndarray, path: Path
) -> Path:
    """A PNG with one row per patch: image | truth overlaid | prediction overlaid."""
    from PIL import Image

    from autoscope.datasets.seg_pictures import overlay

    n, p = len(images), images.shape[1]
    canvas = np.full((n * (p + 2), 3 * (p + 2), 3), 255, np.uint8)
    for i in range(n):
        y = i * (p + 2) + 1
        views = (
            images[i],
            overlay(images[i], truth[i], colors),
            overlay(images[i], pred[i], colors),
        )
        for j, v in enumerate(views):
            canvas[y : y + p, j * (p + 2) + 1 : j * (p + 2) + 1 + p] = v
    Image.fromarray(canvas).save(path, format="PNG")
    return path


def test_report(
    module: Any, test_split: tuple[Any, Any], names: list[str], run_dir: Path, grid: int, seed: int
) -> tuple[dict[str, float], list[Path]]:
    """Per-class test Dice/IoU, the pixel confusion matrix and image | truth | prediction rows.

    Returns:
        `test/dice/<class>`, `test/iou/<class>` and the files written under `run_dir`.
    """
    from autoscope.atomic import write_json
    from autoscope.models import figures
    from autoscope.models.artifacts import metric_key
    from autoscope.models.seg_metrics import summary

    images, truth = (np.asarray(t) for t in test_split)
    pred = np.concatenate([m.numpy() for m in module.test_masks]) if module.test_masks else None
    cm = module.test_cm.numpy()
    run_dir.mkdir(parents=True, exist_ok=True)
    files = [figures.plot_confusion(cm, names, run_dir / "confusion_matrix.png", "test pixels")]
    if pred is not None and len(pred) == len(images):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(images), size=min(grid, len(images), 12), replace=False))
        colors = _colors(module, len(names))
        path = run_dir / "sample_predictions.png"
        files.append(triptychs(images[pick], truth[pick], pred[pick], colors, path))
    flat = summary(cm, "test/", [metric_key(n) for n in names])
    files.append(write_json(run_dir / "per_class.json", {"confusion_matrix": cm.tolist(), **flat}))
    per_class = {k: v for k, v in flat.items() if k.count("/") == 2}
    return per_class, files


def _colors(module: Any, n: int) -> np.ndarray:
    """The project's class colours when the data module knows them, else tab10."""
    from autoscope.infer.raster import class_colors

    dm = getattr(getattr(module, "_trainer", None), "datamodule", None)
    colors = list(getattr(dm, "class_colors", []) or [])
    return class_colors([{"color": colors[i] if i < len(colors) else None} for i in range(n)])
