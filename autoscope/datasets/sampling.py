"""Patch positions (level-0 top-left corners) from regions, points and tissue masks.

Grids are aligned to the slide origin (x = k * stride), so the same annotation gives the same
patches in every dataset version and `dataset diff` compares like with like.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _grid(x0: float, y0: float, x1: float, y1: float, fp: float, stride: float, w: int, h: int):
    """Aligned grid corners whose footprint lies inside [x0, x1] x [y0, y1] and the slide."""
    kx = np.arange(max(0, int(np.floor(x0 / stride))), int(np.floor(min(x1, w - fp) / stride)) + 1)
    ky = np.arange(max(0, int(np.floor(y0 / stride))), int(np.floor(min(y1, h - fp) / stride)) + 1)
    xs, ys = np.meshgrid(np.round(kx * stride), np.round(ky * stride))
    xy = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    keep = (xy[:, 0] + fp <= w + 0.5) & (xy[:, 1] + fp <= h + 0.5) & (xy >= 0).all(axis=1)
    return xy[keep]


def in_regions(
    regions: dict[int, Any], fp: float, stride: float, min_overlap: float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grid patches covered by one class's regions for at least `min_overlap` of their area.

    Args:
        regions: class index -> shapely geometry (union of that class's polygons), level-0 px.
        fp: patch footprint in level-0 pixels.
        stride: grid step in level-0 pixels.
        min_overlap: minimal covered fraction of the patch area (0..1].
        width: slide width in level-0 pixels.
        height: slide height in level-0 pixels.

    Returns:
        (xy int64 [N, 2], label_idx int64 [N]); a patch covered by several classes takes the one
        covering most of it.
    """
    import shapely

    if not regions:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    bounds = np.array([g.bounds for g in regions.values()])
    xy = _grid(
        bounds[:, 0].min(),
        bounds[:, 1].min(),
        bounds[:, 2].max(),
        bounds[:, 3].max(),
        fp,
        stride,
        width,
        height,
    )
    if len(xy) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    boxes = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + fp, xy[:, 1] + fp)
    tree = shapely.STRtree(boxes)
    frac = np.zeros((len(xy), len(regions)))
    for j, geom in enumerate(regions.values()):
        shapely.prepare(geom)
        hit = tree.query(geom, predicate="intersects")
        if len(hit):
            frac[hit, j] = shapely.area(shapely.intersection(boxes[hit], geom)) / (fp * fp)
    best = frac.argmax(axis=1)
    keep = frac[np.arange(len(xy)), best] >= min_overlap - 1e-9
    labels = np.array(list(regions.keys()), np.int64)[best]
    return xy[keep], labels[keep]


def around_points(xy_pts: np.ndarray, fp: float, width: int, height: int) -> np.ndarray:
    """Top-left corners of patches centred on points, shifted to stay inside the slide."""
    corner = np.round(np.asarray(xy_pts, float) - fp / 2.0)
    corner[:, 0] = np.clip(corner[:, 0], 0, max(0, width - fp))
    corner[:, 1] = np.clip(corner[:, 1], 0, max(0, height - fp))
    return corner.astype(np.int64)


def in_mask(
    mask: np.ndarray,
    downsample: float,
    fp: float,
    stride: float,
    min_overlap: float,
    width: int,
    height: int,
) -> np.ndarray:
    """Grid patches whose footprint is at least `min_overlap` foreground in a low-res mask.

    Args:
        mask: HxW bool tissue mask.
        downsample: level-0 pixels per mask pixel.
        fp: patch footprint in level-0 pixels.
        stride: grid step in level-0 pixels.
        min_overlap: minimal tissue fraction of the footprint.
        width: slide width in level-0 pixels.
        height: slide height in level-0 pixels.
    """
    xy = _grid(0, 0, width, height, fp, stride, width, height)
    if len(xy) == 0 or not mask.any():
        return np.zeros((0, 2), np.int64)
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    mh, mw = mask.shape
    x0 = np.clip(np.floor(xy[:, 0] / downsample).astype(int), 0, mw)
    y0 = np.clip(np.floor(xy[:, 1] / downsample).astype(int), 0, mh)
    x1 = np.clip(np.ceil((xy[:, 0] + fp) / downsample).astype(int), 0, mw)
    y1 = np.clip(np.ceil((xy[:, 1] + fp) / downsample).astype(int), 0, mh)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    fg = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return xy[fg / area >= min_overlap - 1e-9]


def cap(n: int, max_n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded random subset of at most `max_n` of `n` items."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=int(max_n), replace=False))
