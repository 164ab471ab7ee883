"""The training kit of cell detection (`autoscope.tasks`: family `detection`).

The model is a `PatchClassifier` around a dense net (`seg_nets`: one heatmap channel per cell
class, sigmoid), so archiving, loading and serving work as for the other families; `model.detect`
(peak threshold, NMS and match radii in µm) travels in `spec.json` (the card's `arch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.models.kit import TrainKit

HEAD_PRIOR_LOGIT = -2.19  # logit of 0.1: the heatmaps' starting probability

KIT = TrainKit(
    data_module="autoscope.models.det_data:DetDataModule",
    build_model="autoscope.models.detection:build_model",
    build_module="autoscope.models.detection:build_module",
    make_spec="autoscope.models.detection:make_spec",
    test_report="autoscope.models.detection:test_report",
)


def detect_params(arch: Mapping[str, Any] | None) -> Any:
    """`DetectParams` of a model config or card arch (`detect:` block; defaults if absent)."""
    from autoscope.models.det_module import DetectParams

    given = dict((arch or {}).get("detect") or {})
    return DetectParams(**{k: float(v) for k, v in given.items() if v is not None})


def build_model(arch: Mapping[str, Any], num_classes: int, stores: Any = None) -> Any:
    """`build.build_classifier` (a dense net, `num_classes` heatmaps) with its `detect` params."""
    import torch

    from autoscope.models.build import build_classifier

    model = build_classifier(arch, num_classes, stores)
    model.detect = detect_params(arch)
    head = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    if head.bias is not None and not arch.get("pretrained"):
        with torch.no_grad():  # start at a 10 % centre prior (CenterNet): no flood of peaks
            head.bias.fill_(HEAD_PRIOR_LOGIT)
    return model


def build_module(
    model: Any,
    *,
    loss: Any,
    optimizer: Callable[..., Any],
    scheduler: Callable[..., Any] | None,
    class_counts: Sequence[int],
    tta: bool,
) -> Any:
    """The `DetModule` (test-time flips are not used: peaks are found on one view)."""
    from autoscope.models.det_module import DetModule

    return DetModule(
        model,
        loss=loss,
        optimizer=optimizer,
        scheduler=scheduler,
        num_classes=len(class_counts),
        detect=getattr(model, "detect", None),
    )


def make_spec(
    arch: Mapping[str, Any], classes: Sequence[Any], mpp: float | None, patch_px: int
) -> dict:
    """`classifier.make_spec` plus `output: {kind: heatmap, activation: sigmoid}` and `detect`."""
    from dataclasses import asdict

    from autoscope.models.classifier import make_spec as base

    spec = base(arch, classes, mpp, patch_px)
    spec["output"] = {"kind": "heatmap", "activation": "sigmoid"}
    spec["arch"]["detect"] = asdict(detect_params(arch))
    return spec


def draw_cells(
    image: np.ndarray, cells: np.ndarray, colors: Sequence[str], cross: bool
) -> np.ndarray:
    """A copy of `image` with cells (x, y, class) drawn: circles (truth) or crosses (found)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(img)
    r = max(2.0, image.shape[0] / 40)
    for x, y, c, *_ in cells:
        col = colors[int(c) % len(colors)]
        if cross:
            draw.line([x - r, y, x + r, y], fill=col, width=2)
            draw.line([x, y - r, x, y + r], fill=col, width=2)
        else:
            draw.ellipse([x - r, y - r, x + r, y + r], outline=col, width=2)
    return np.asarray(img)


def test_report(
    module: Any, test_split: tuple[Any, Any], names: list[str], run_dir: Path, grid: int, seed: int
) -> tuple[dict[str, float], list[Path]]:
    """Per-class test P/R/F1, the count table and image | truth | found rows.

    Returns:
        `test/f1/<class>` (and precision, recall) and the files written under `run_dir`.
    """
    from PIL import Image

    from autoscope.atomic import write_json
    from autoscope.models.artifacts import metric_key
    from autoscope.models.det_points import scores

    images = np.asarray(test_split[0])
    dm = module._trainer.datamodule if module._trainer is not None else None
    truth = list(getattr(dm, "truth", {}).get("test", []))
    colors = list(getattr(dm, "class_colors", []) or ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e"])
    counts = getattr(module, "test_counts", np.zeros((len(names) + 1, 3), np.int64))
    flat = scores(counts, [metric_key(n) for n in names], "test/")
    run_dir.mkdir(parents=True, exist_ok=True)
    table = {
        n: dict(zip(("tp", "fp", "fn"), map(int, counts[k]), strict=True))
        for k, n in enumerate(names)
    }
    files = [write_json(run_dir / "per_class.json", {"counts": table, **flat})]
    found = module.test_cells
    if len(found) == len(images) == len(truth) and len(images):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(images), size=min(grid, len(images), 12), replace=False))
        p = images.shape[1]
        canvas = np.full((len(pick) * (p + 2), 3 * (p + 2), 3), 255, np.uint8)
        for row, i in enumerate(pick):
            views = (
                images[i],
                draw_cells(images[i], truth[i], colors, False),
                draw_cells(images[i], found[i], colors, True),
            )
            for j, v in enumerate(views):
                canvas[
                    row * (p + 2) + 1 : row * (p + 2) + 1 + p, j * (p + 2) + 1 : j * (p + 2) + 1 + p
                ] = v
        path = run_dir / "sample_predictions.png"
        Image.fromarray(canvas).save(path, format="PNG")
        files.append(path)
    per_class = {k: v for k, v in flat.items() if k.count("/") == 2}
    return per_class, files
