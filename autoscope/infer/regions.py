"""Tile predictions as a QuPath GeoJSON FeatureCollection: one merged region per class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autoscope.infer.raster import hex_rgb


def _row_runs(coords: np.ndarray, step0: float) -> list[tuple[float, float, float]]:
    """Merge horizontally adjacent tiles: `(x_start, x_end_of_last_tile_start, y)` per run."""
    if len(coords) == 0:
        return []
    order = np.lexsort((coords[:, 0], coords[:, 1]))
    c = coords[order]
    gx = np.round(c[:, 0] / step0).astype(np.int64)
    gy = np.round(c[:, 1] / step0).astype(np.int64)
    brk = np.nonzero((np.diff(gy) != 0) | (np.diff(gx) != 1))[0] + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk - 1, [len(c) - 1]])
    pairs = zip(starts, ends, strict=True)
    return [(float(c[s, 0]), float(c[e, 0]), float(c[s, 1])) for s, e in pairs]


def class_regions(
    coords: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[dict[str, Any]],
    *,
    tile0: float,
    step0: float,
    slide_mpp: float,
) -> dict[str, Any]:
    """A FeatureCollection with one (Multi)Polygon annotation per predicted class.

    Tiles are squares in level-0 pixels (the grid cell when tiles overlap, so neighbours touch);
    each class's squares are merged with shapely's `unary_union`. Properties follow QuPath:
    `objectType`, `classification {name, color}`, and `measurements` (tiles, mean probability,
    area in mm²).
    """
    from shapely import box, unary_union

    side = min(tile0, step0)  # area a tile stands for
    gside = min(tile0, math.ceil(step0))  # drawn side: rounded corners must not leave slivers
    features: list[dict[str, Any]] = []
    top = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    for k, cls in enumerate(classes):
        sel = top == k
        if not sel.any():
            continue
        runs = _row_runs(coords[sel], step0)
        geom = unary_union([box(x0, y, x1 + gside, y + gside) for x0, x1, y in runs])
        n = int(sel.sum())
        measurements = {
            "tiles": n,
            "mean_probability": round(float(probs[sel, k].mean()), 6),
            "area_mm2": round(n * (side * slide_mpp) ** 2 / 1e6, 6),
        }
        features.append(annotation_feature(geom, cls, k, measurements))
    return {"type": "FeatureCollection", "features": features}


def annotation_feature(
    geom: Any, cls: dict[str, Any], index: int, measurements: dict[str, Any]
) -> dict[str, Any]:
    """One QuPath annotation: `objectType`, `classification {name, color [r, g, b]}`,
    `measurements` (the tile classifier's and the segmentation engine's regions alike)."""
    from shapely.geometry import mapping

    return {
        "type": "Feature",
        "geometry": mapping(geom),
        "properties": {
            "objectType": "annotation",
            "name": cls["name"],
            "classification": {
                "name": cls["name"],
                "color": list(hex_rgb(cls.get("color"), index)),
            },
            "isLocked": False,
            "measurements": measurements,
        },
    }
