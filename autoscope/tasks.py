"""Task families: which dataset targets, training kit, engine and patch API a `project.task` uses.

`project.task` (and the model card's `task`) names what the model predicts; every stage looks its
family's pieces up here, by name, so this module imports nothing of them (no import cycles, no
torch at import time).
"""

from __future__ import annotations

import importlib
from typing import Any

from autoscope.errors import UserError

FAMILIES: dict[str, str] = {  # project.task -> family
    "tissue_classification": "classification",
    "cell_classification": "classification",  # patches centred on cells, one label each
    "slide_classification": "classification",
    "tissue_segmentation": "segmentation",
    "cell_detection": "detection",
}

# family -> what -> "module:attr" (None: the family has no such piece)
ENTRIES: dict[str, dict[str, str | None]] = {
    "classification": {
        "targets": None,  # labels are the manifest's own column
        "kit": "autoscope.models.kit:CLASSIFICATION",
        "engine": "autoscope.infer.engine:infer_slide",
        "patches": None,  # the bento's classify API
    },
    "segmentation": {
        "targets": "autoscope.datasets.segmentation:SegTargets",
        "kit": "autoscope.models.segmentation:KIT",
        "engine": "autoscope.infer.segment:infer_slide",
        "patches": "autoscope.infer.segment:predict_patches",
    },
    "detection": {
        "targets": "autoscope.datasets.detection:DetTargets",
        "kit": "autoscope.models.detection:KIT",
        "engine": "autoscope.infer.detect:infer_slide",
        "patches": "autoscope.infer.detect:predict_patches",
    },
}

METRICS: dict[str, str] = {  # family -> the metric a recipe of that family should drive with
    "classification": "val/acc",
    "segmentation": "val/dice",
    "detection": "val/f1",
}


OUTPUTS: dict[str, str] = {  # family -> what `autoscope infer` writes per slide (its last line)
    "classification": "heatmaps (heatmap.png, heatmap.tif), GeoJSON (regions.geojson)",
    "segmentation": "label maps (labels.tif, labels.png, heatmap.png), QuPath polygons "
    "(regions.geojson), class areas",
    "detection": "QuPath detections (cells.geojson[.gz]), density heatmap (heatmap.png), "
    "counts per mm²",
}


def family(task: str, where: str = "project.task") -> str:
    """The family of `task`.

    Raises:
        UserError: an unknown task (one line naming the known ones).
    """
    try:
        return FAMILIES[str(task)]
    except KeyError:
        raise UserError(
            f"{where}: '{task}' is not a task (use one of {', '.join(FAMILIES)})"
        ) from None


def locate(ref: str) -> Any:
    """The attribute named by `module:attr`."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def entry(task: str, what: str) -> Any:
    """The `what` (targets, kit, engine, patches) of `task`'s family, or None when it has none."""
    ref = ENTRIES[family(task)][what]
    return locate(ref) if ref else None
