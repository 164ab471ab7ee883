"""Segmentation outputs of one slide: the pyramidal label TIFF, class polygons, the pictures.

All read the label map from its memory map (`labels.npy` beside them while the slide is
written) tile by tile or band by band, so memory stays flat in slide size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.infer.raster import HEATMAP_ALPHA, class_colors

TIFF_TILE_PX = 256  # label TIFF tile side
POLYGON_BAND_PX = 1024  # label-map rows polygonised at a time


def _tiles(labels: np.ndarray, step: int, tile: int) -> Iterator[np.ndarray]:
    """Tiles (row-major) of `labels[::step, ::step]`, each read from the memory map alone."""
    h, w = math.ceil(labels.shape[0] / step), math.ceil(labels.shape[1] / step)
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            part = labels[
                ty * step : (ty + tile) * step : step, tx * step : (tx + tile) * step : step
            ]
            out = np.zeros((tile, tile), np.uint8)
            out[: part.shape[0], : part.shape[1]] = part
            yield out


def write_label_tiff(labels: np.ndarray, map_mpp: float, path: Path) -> dict[str, Any]:
    """The label map (0 = not predicted, k + 1 = class k) as a pyramidal tiled TIFF.

    Levels are top-level pages, largest first, the lower ones NewSubfileType=1, with resolution
    tags: OpenSlide and QuPath open it at the slide's scale.

    Returns:
        `{"mpp": level-0 MPP, "levels": [[w, h], ...], "values": "0 none, k+1 class k"}`.
    """
    import tifffile

    h, w = labels.shape
    steps = [1]
    while max(math.ceil(h / steps[-1]), math.ceil(w / steps[-1])) > TIFF_TILE_PX:
        steps.append(steps[-1] * 2)
    if len(steps) < 2:
        steps.append(2)
    levels = []
    with tifffile.TiffWriter(path, bigtiff=h * w > 2**31) as tif:
        for k, step in enumerate(steps):
            shape = (math.ceil(h / step), math.ceil(w / step))
            res = 1e4 / (map_mpp * step)  # pixels per centimetre
            tif.write(
                _tiles(labels, step, TIFF_TILE_PX),
                shape=shape,
                dtype=np.uint8,
                photometric="minisblack",
                compression="zlib",
                tile=(TIFF_TILE_PX, TIFF_TILE_PX),
                subfiletype=0 if k == 0 else 1,
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                metadata=None,
                software="autoscope",
            )
            levels.append([shape[1], shape[0]])
    return {"mpp": map_mpp, "levels": levels, "values": "0 = not predicted, k + 1 = class k"}


def _runs(band: np.ndarray, value: int, y0: int) -> np.ndarray:
    """Horizontal runs `[x_start, x_end, y]` of `value` in a band whose first row is `y0`."""
    m = np.zeros((band.shape[0], band.shape[1] + 2), bool)
    m[:, 1:-1] = band == value
    d = np.diff(m.view(np.int8), axis=1)
    ys, xs = np.nonzero(d == 1)
    _, xe = np.nonzero(d == -1)
    return np.stack([xs, xe, ys + y0], axis=1)


def class_polygons(
    labels: np.ndarray, num_classes: int, *, px0: float, simplify_px0: float, min_area_px0: float
) -> dict[int, Any]:
    """Class index -> shapely (Multi)Polygon in level-0 px, from the label map band by band.

    Pixel runs become boxes, merged per band and then across bands (holes kept), scaled by
    `px0` (level-0 px per map px), simplified to `simplify_px0` and rid of parts smaller than
    `min_area_px0`.
    """
    import shapely
    from shapely import affinity

    parts: dict[int, list] = {k: [] for k in range(num_classes)}
    for y0 in range(0, labels.shape[0], POLYGON_BAND_PX):
        band = np.asarray(labels[y0 : y0 + POLYGON_BAND_PX])
        for k in range(num_classes):
            r = _runs(band, k + 1, y0)
            if len(r):
                boxes = shapely.box(r[:, 0], r[:, 2], r[:, 1], r[:, 2] + 1)
                parts[k].append(shapely.union_all(boxes))
    out = {}
    for k, geoms in parts.items():
        if not geoms:
            continue
        g = affinity.scale(shapely.union_all(geoms), px0, px0, origin=(0, 0))
        g = g.simplify(simplify_px0, preserve_topology=True) if simplify_px0 > 0 else g
        polys = [p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon"]
        polys = [p for p in polys if p.area >= min_area_px0]
        if polys:
            out[k] = shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0]
    return out


def qupath_annotations(
    polygons: dict[int, Any], classes: Sequence[dict[str, Any]], px0_mm2: float
) -> dict[str, Any]:
    """A QuPath GeoJSON FeatureCollection: one annotation per class (`regions.annotation_feature`)
    with its area in mm² (`px0_mm2`: one level-0 pixel)."""
    from autoscope.infer.regions import annotation_feature

    features = [
        annotation_feature(g, classes[k], k, {"area_mm2": round(float(g.area) * px0_mm2, 6)})
        for k, g in sorted(polygons.items())
    ]
    return {"type": "FeatureCollection", "features": features}


def sample_map(grid: np.ndarray, shape: tuple[int, int], map_per_px: float) -> np.ndarray:
    """Nearest-neighbour samples of a (memory-mapped) map at `shape` pixels of `map_per_px`."""
    ys = np.minimum(((np.arange(shape[0]) + 0.5) * map_per_px).astype(int), grid.shape[0] - 1)
    xs = np.minimum(((np.arange(shape[1]) + 0.5) * map_per_px).astype(int), grid.shape[1] - 1)
    return np.asarray(grid[ys][:, xs])


def label_pictures(
    labels: np.ndarray,
    confidence: np.ndarray,
    thumb: np.ndarray,
    map_per_thumb_px: float,
    classes: Sequence[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray]:
    """(heatmap: the thumbnail with class colours blended in by confidence, coloured label map
    on white) at the thumbnail's size."""
    lab = sample_map(labels, thumb.shape[:2], map_per_thumb_px)
    conf = sample_map(confidence, thumb.shape[:2], map_per_thumb_px).astype(np.float32) / 255.0
    colors = np.concatenate([np.full((1, 3), 255, np.uint8), class_colors(classes)])
    rgb = colors[lab]
    a = (conf * HEATMAP_ALPHA * (lab > 0))[..., None]
    heat = thumb.astype(np.float32) * (1 - a) + rgb.astype(np.float32) * a
    return np.clip(np.round(heat), 0, 255).astype(np.uint8), rgb
