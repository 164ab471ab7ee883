"""Patch samplers: where patches go on a slide, as level-0 top-left corners.

The one sampler of the project: dataset building (training) and the inference engine both place
patches here. Every sampler returns ``np.ndarray[int64]`` of shape ``(N, 2)`` holding
``(x0, y0)`` in level-0 pixels, row-major (sorted by y, then x) for the grid samplers and in draw
order for the random one. They are pure functions of their arguments: the same seed gives the
same coordinates. Grids are anchored at the slide origin, so the same stride gives the same
lattice everywhere (and `dataset diff` compares like with like).

One coverage rule: a patch is kept when the share of its footprint covered (by tissue in a
mask: :func:`tissue_fractions`; by annotated regions: :func:`region_fractions`) is at least a
minimal fraction, decided by :func:`covered`. Lengths in level-0 pixels come from
:func:`autoscope.slides.units.level0_px`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COVER_EPS = 1e-9  # a fraction this close below the minimum still counts (float round-off)


def _empty() -> np.ndarray:
    return np.zeros((0, 2), np.int64)


def _lattice(x_start: int, x_stop: int, y_start: int, y_stop: int, stride: int) -> np.ndarray:
    """All (x, y) with x in range(x_start, x_stop, stride) etc., row-major."""
    xs = np.arange(x_start, x_stop, stride, dtype=np.int64)
    ys = np.arange(y_start, y_stop, stride, dtype=np.int64)
    if len(xs) == 0 or len(ys) == 0:
        return _empty()
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def covered(fractions: np.ndarray, min_fraction: float) -> np.ndarray:
    """The one coverage rule: which patches have at least `min_fraction` (0..1) covered."""
    return np.asarray(fractions, float) >= float(min_fraction) - COVER_EPS


def _check(patch_px_level0: int, stride_px_level0: int) -> None:
    if patch_px_level0 <= 0 or stride_px_level0 <= 0:
        raise ValueError(
            f"patch_px_level0 ({patch_px_level0}) and stride_px_level0 ({stride_px_level0}) "
            "must be positive"
        )


def grid(
    width: int,
    height: int,
    patch_px_level0: int,
    stride_px_level0: int,
    *,
    cover_edges: bool = False,
) -> np.ndarray:
    """A regular grid of patches over a ``width`` x ``height`` level-0 slide.

    Args:
        width: Level-0 width in pixels.
        height: Level-0 height in pixels.
        patch_px_level0: Patch side in level-0 pixels.
        stride_px_level0: Step between patches in level-0 pixels.
        cover_edges: Also place patches that stick out past the right/bottom edge, so every
            pixel is covered (inference); by default only patches fully inside (training).
    """
    _check(patch_px_level0, stride_px_level0)
    if cover_edges:
        return _lattice(0, width, 0, height, stride_px_level0)
    return _lattice(
        0, width - patch_px_level0 + 1, 0, height - patch_px_level0 + 1, stride_px_level0
    )


def tissue_fractions(
    coords: np.ndarray, mask: np.ndarray, mask_downsample: float, patch_px_level0: int
) -> np.ndarray:
    """Fraction of mask pixels set under each patch (mask pixels whose centre is inside it).

    Args:
        coords: ``(N, 2)`` level-0 top-left corners.
        mask: ``(H, W)`` bool tissue mask covering the slide at ``mask_downsample``.
        mask_downsample: Level-0 pixels per mask pixel.
        patch_px_level0: Patch side in level-0 pixels.
    """
    if len(coords) == 0:
        return np.zeros(0)
    m = np.asarray(mask, bool)
    integral = np.zeros((m.shape[0] + 1, m.shape[1] + 1), np.int64)
    integral[1:, 1:] = m.cumsum(0).cumsum(1)
    lo = np.floor(coords / mask_downsample + 0.5 - 1e-9).astype(np.int64)  # first centre inside
    hi = np.floor((coords + patch_px_level0) / mask_downsample + 0.5 - 1e-9).astype(np.int64)
    hi = np.maximum(hi, lo + 1)  # a patch smaller than a mask pixel still sees one pixel
    total = (hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1])
    x0, y0 = np.clip(lo[:, 0], 0, m.shape[1]), np.clip(lo[:, 1], 0, m.shape[0])
    x1, y1 = np.clip(hi[:, 0], 0, m.shape[1]), np.clip(hi[:, 1], 0, m.shape[0])
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / total


def foreground_grid(
    mask: np.ndarray,
    mask_downsample: float,
    patch_px_level0: int,
    stride_px_level0: int,
    min_tissue_fraction: float = 0.5,
    *,
    width: int | None = None,
    height: int | None = None,
    cover_edges: bool = False,
) -> np.ndarray:
    """The :func:`grid` patches whose tissue fraction is at least ``min_tissue_fraction``.

    Args:
        mask: ``(H, W)`` bool tissue mask at ``mask_downsample``.
        mask_downsample: Level-0 pixels per mask pixel.
        patch_px_level0: Patch side in level-0 pixels.
        stride_px_level0: Step between patches in level-0 pixels.
        min_tissue_fraction: Keep a patch when this share of it (0..1) is tissue.
        width: Level-0 slide width (default: mask width x downsample).
        height: Level-0 slide height (default: mask height x downsample).
        cover_edges: See :func:`grid`.
    """
    w = width if width is not None else round(mask.shape[1] * mask_downsample)
    h = height if height is not None else round(mask.shape[0] * mask_downsample)
    coords = grid(w, h, patch_px_level0, stride_px_level0, cover_edges=cover_edges)
    frac = tissue_fractions(coords, mask, mask_downsample, patch_px_level0)
    return coords[covered(frac, min_tissue_fraction)]


def random_points(
    n: int,
    seed: int,
    width: int,
    height: int,
    patch_px_level0: int,
    *,
    mask: np.ndarray | None = None,
    mask_downsample: float = 1.0,
    min_tissue_fraction: float = 0.5,
    max_draws: int = 100,
) -> np.ndarray:
    """``n`` seeded uniform random patches fully inside the slide (on tissue if ``mask``).

    Draws candidates in rounds of ``n`` (with ``numpy.random.default_rng(seed)``) and keeps those
    with enough tissue, so the result depends only on the arguments. Returns fewer than ``n``
    when ``max_draws`` rounds do not find enough tissue.
    """
    if patch_px_level0 <= 0 or n < 0:
        raise ValueError("patch_px_level0 must be positive and n non-negative")
    if n == 0 or width < patch_px_level0 or height < patch_px_level0:
        return _empty()
    rng = np.random.default_rng(seed)
    found: list[np.ndarray] = []
    count = 0
    for _ in range(max_draws):
        xs = rng.integers(0, width - patch_px_level0 + 1, n, dtype=np.int64)
        ys = rng.integers(0, height - patch_px_level0 + 1, n, dtype=np.int64)
        cand = np.stack([xs, ys], axis=1)
        if mask is not None:
            frac = tissue_fractions(cand, mask, mask_downsample, patch_px_level0)
            cand = cand[covered(frac, min_tissue_fraction)]
        found.append(cand)
        count += len(cand)
        if count >= n:
            break
    return np.concatenate(found)[:n] if found else _empty()


def _region_lattice(
    bounds: tuple[float, float, float, float],
    patch_px_level0: int,
    stride_px_level0: int,
    width: int | None,
    height: int | None,
) -> np.ndarray:
    """Lattice corners whose patch can touch `bounds` (and lies inside the slide, if sized)."""
    minx, miny, maxx, maxy = bounds
    s, p = stride_px_level0, patch_px_level0
    x_start = max(0, int(np.ceil((minx - p) / s)) * s)  # first patch that can touch the area
    y_start = max(0, int(np.ceil((miny - p) / s)) * s)
    x_stop, y_stop = int(np.floor(maxx)) + 1, int(np.floor(maxy)) + 1
    if width is not None:
        x_stop = min(x_stop, width - p + 1)
    if height is not None:
        y_stop = min(y_stop, height - p + 1)
    return _lattice(x_start, x_stop, y_start, y_stop, s)


def region_fractions(coords: np.ndarray, area: Any, patch_px_level0: int) -> np.ndarray:
    """Share of each patch's footprint inside a shapely geometry (exact polygon area).

    Args:
        coords: ``(N, 2)`` level-0 top-left corners.
        area: A valid shapely (multi)polygon in level-0 pixels.
        patch_px_level0: Patch side in level-0 pixels.
    """
    import shapely

    if len(coords) == 0:
        return np.zeros(0)
    p = patch_px_level0
    boxes = shapely.box(coords[:, 0], coords[:, 1], coords[:, 0] + p, coords[:, 1] + p)
    shapely.prepare(area)
    out = np.zeros(len(coords))
    hit = np.flatnonzero(shapely.intersects(area, boxes))
    if len(hit):
        out[hit] = shapely.area(shapely.intersection(boxes[hit], area)) / float(p * p)
    return out


def in_regions(
    regions: Mapping[int, Any],
    patch_px_level0: int,
    stride_px_level0: int,
    min_overlap: float,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Grid patches inside a slide covered by one class's regions for `min_overlap` of their area.

    Args:
        regions: Class index -> shapely geometry (union of that class's polygons), level-0 px.
        patch_px_level0: Patch side in level-0 pixels.
        stride_px_level0: Step between patches in level-0 pixels.
        min_overlap: Minimal covered share (0..1] of the patch (see :func:`covered`).
        width: Slide width in level-0 pixels (patches lie fully inside the slide).
        height: Slide height in level-0 pixels.

    Returns:
        ``(xy int64 [N, 2], label_idx int64 [N])``; a patch covered by several classes takes the
        one covering most of it.
    """
    _check(patch_px_level0, stride_px_level0)
    if not regions:
        return _empty(), np.zeros(0, np.int64)
    b = np.array([g.bounds for g in regions.values()])
    bounds = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    xy = _region_lattice(bounds, patch_px_level0, stride_px_level0, width, height)
    if len(xy) == 0:
        return _empty(), np.zeros(0, np.int64)
    frac = np.stack([region_fractions(xy, g, patch_px_level0) for g in regions.values()], axis=1)
    best = frac.argmax(axis=1)
    keep = covered(frac[np.arange(len(xy)), best], min_overlap)
    labels = np.array(list(regions.keys()), np.int64)[best]
    return xy[keep], labels[keep]


def in_polygons(
    polygons: Sequence[Any] | Any,
    patch_px_level0: int,
    stride_px_level0: int,
    min_overlap: float = 0.5,
) -> np.ndarray:
    """Grid patches whose area inside the polygons is at least ``min_overlap`` of the patch.

    Args:
        polygons: Shapely polygon(s) (or a multi-geometry) in level-0 pixels.
        patch_px_level0: Patch side in level-0 pixels.
        stride_px_level0: Step between patches in level-0 pixels (lattice anchored at 0, 0).
        min_overlap: Share (0..1] of the patch area that must lie inside the polygons.
    """
    import shapely

    _check(patch_px_level0, stride_px_level0)
    geoms = [polygons] if isinstance(polygons, shapely.Geometry) else list(polygons)
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        return _empty()
    area = shapely.union_all(shapely.make_valid(np.asarray(geoms, dtype=object)))
    coords = _region_lattice(area.bounds, patch_px_level0, stride_px_level0, None, None)
    return coords[covered(region_fractions(coords, area, patch_px_level0), min_overlap)]


def around_points(
    points_xy: np.ndarray, patch_px_level0: int, width: int, height: int
) -> np.ndarray:
    """Top-left corners of patches centred on level-0 points, shifted to stay inside the slide."""
    corner = np.round(np.asarray(points_xy, float) - patch_px_level0 / 2.0)
    corner[:, 0] = np.clip(corner[:, 0], 0, max(0, width - patch_px_level0))
    corner[:, 1] = np.clip(corner[:, 1], 0, max(0, height - patch_px_level0))
    return corner.astype(np.int64)


def cap(n: int, max_n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded random subset of at most `max_n` of `n` items (all if None)."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=int(max_n), replace=False))
