"""The detection engine's settings: the `infer.detect` block of `conf/infer/default.yaml`.

`threshold` and `nms_um` left null take the model's own (`spec.json` `arch.detect`, the values
its validation F1 was measured with), else the training defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from autoscope.errors import UserError
from autoscope.infer.spec import InferSpec, block_settings

SETTINGS = {  # infer.detect keys (conf/infer/default.yaml) and their defaults
    "tile_px": None,
    "overlap_um": 12.0,
    "threshold": None,
    "nms_um": None,
    "merge_um": 3.0,
    "outline_um": 3.0,
    "gzip_min_cells": 20000,
    "density_um": 50.0,
}


@dataclass(frozen=True)
class DetSettings:
    """The detection engine's settings (`infer.detect`), checked.

    Attributes:
        tile_px: tile side at the model's resolution (None: the card's patch_px).
        overlap_px: overlap of neighbouring tiles (>= one cell diameter), at the model's mpp.
        threshold: lowest peak probability kept.
        nms_um: detections closer than this within a tile are one cell.
        merge_um: detections of neighbouring tiles closer than this are one cell.
        outline_um: radius of the circle drawn for each detection in the GeoJSON.
        gzip_min_cells: from this many cells on, `cells.geojson.gz` is written too.
        density_um: side of a density heatmap cell.
    """

    tile_px: int
    overlap_px: int
    threshold: float
    nms_um: float
    merge_um: float
    outline_um: float
    gzip_min_cells: int
    density_um: float

    @property
    def step_px(self) -> int:
        """Grid step at the model's resolution."""
        return self.tile_px - self.overlap_px

    @classmethod
    def from_spec(cls, spec: InferSpec) -> DetSettings:
        """The settings of `spec.detect` over the model's and the defaults.

        Raises:
            UserError: an unknown key or a bad value (one line naming `infer.detect.<key>`).
        """
        from autoscope.models.detection import detect_params

        model = detect_params(_model_arch(spec))
        defaults = {**SETTINGS, "threshold": model.threshold, "nms_um": model.nms_um}
        v = block_settings("infer.detect", spec.detect, defaults, "detection")
        tile = int(v["tile_px"] or spec.patch_px)
        overlap = round(float(v["overlap_um"]) / float(spec.mpp))
        out = cls(
            tile,
            overlap,
            float(v["threshold"]),
            float(v["nms_um"]),
            float(v["merge_um"]),
            float(v["outline_um"]),
            int(v["gzip_min_cells"]),
            float(v["density_um"]),
        )
        if not 0 <= overlap < tile or tile % 4:
            raise UserError(
                f"infer.detect: overlap_um {v['overlap_um']} ({overlap} px) must be below tile_px "
                f"{tile} (a multiple of 4)"
            )
        if not 0 < out.threshold < 1 or out.density_um <= 0:
            raise UserError("infer.detect: threshold must lie in (0, 1) and density_um be positive")
        return out


def _model_arch(spec: InferSpec) -> dict:
    """The archived model's arch: the card's, else its folder's `spec.json` (else empty)."""
    if spec.arch:
        return dict(spec.arch)
    folder = spec.model_info.get("dir")
    path = Path(str(folder)) / "spec.json" if folder else None
    if path is None or not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("arch") or {})
    except (OSError, ValueError):
        return {}
