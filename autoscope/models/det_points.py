"""Cells from heatmaps and cells against truth: peak finding, distance NMS, Hungarian matching.

One implementation for training metrics, the whole-slide engine and the bento's patch API.
Coordinates are in pixels of the model input (continuous: pixel `i` spans `[i, i+1)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def find_peaks(
    heat: Any, *, threshold: float, window_px: int = 3, stride_px: int = 1
) -> list[np.ndarray]:
    """Local maxima of per-class probability maps (max-pool NMS), per image.

    Args:
        heat: torch float `[N, C, h, w]` probabilities (after the sigmoid).
        threshold: lowest probability kept.
        window_px: max-pool window in heatmap pixels (odd).
        stride_px: input pixels per heatmap pixel (the net's output stride).

    Returns:
        Per image a float32 `[K, 4]` array: x, y (input pixels, heatmap pixel centres), class,
        probability.
    """
    import torch

    window_px = int(window_px) | 1
    pooled = torch.nn.functional.max_pool2d(heat, window_px, 1, window_px // 2)
    keep = (heat >= pooled) & (heat >= threshold)
    n, c, y, x = keep.nonzero(as_tuple=True)
    p = heat[n, c, y, x].float()
    cols = torch.stack(
        [(x.float() + 0.5) * stride_px, (y.float() + 0.5) * stride_px, c.float(), p], 1
    )
    cols, n = cols.cpu().numpy().astype(np.float32), n.cpu().numpy()
    return [cols[n == i] for i in range(heat.shape[0])]


def nms_distance(cells: np.ndarray, radius: float) -> np.ndarray:
    """Greedy non-maximum suppression by distance: the strongest of cells closer than `radius`.

    One nucleus gives one detection whatever the class channel it peaks in.

    Args:
        cells: `[K, >=4]` rows x, y, class, probability.
        radius: suppression distance in the units of x, y.

    Returns:
        The kept rows, strongest first.
    """
    if len(cells) < 2 or radius <= 0:
        return cells
    from scipy.spatial import cKDTree

    order = np.argsort(-cells[:, 3], kind="stable")
    cells = cells[order]
    pairs = cKDTree(cells[:, :2]).query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        return cells
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs:
        lo, hi = (a, b) if a < b else (b, a)
        neighbours.setdefault(int(lo), []).append(int(hi))
    dead = np.zeros(len(cells), bool)
    for i in range(len(cells)):
        if not dead[i]:
            for j in neighbours.get(i, ()):
                dead[j] = True
    return cells[~dead]


def match(pred_xy: np.ndarray, true_xy: np.ndarray, radius: float) -> np.ndarray:
    """Hungarian matching of predicted to true points within `radius`: `[M, 2]` index pairs."""
    if len(pred_xy) == 0 or len(true_xy) == 0:
        return np.zeros((0, 2), np.int64)
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    d = cdist(pred_xy, true_xy)
    cost = np.where(d <= radius, d, 1e6)
    rows, cols = linear_sum_assignment(cost)
    ok = d[rows, cols] <= radius
    return np.stack([rows[ok], cols[ok]], 1).astype(np.int64)


def count_matches(
    pred: np.ndarray, truth: np.ndarray, radius: float, num_classes: int
) -> np.ndarray:
    """True positives, false positives and false negatives per class: int64 `[C + 1, 3]`.

    Rows `0..C-1` match within each class; the last row matches regardless of class (how well
    nuclei are found at all). `pred` and `truth` rows start x, y, class; a 4th truth column
    `inside` (0/1) marks cells whose centre lies outside the patch: a detection matched to one
    of them counts neither way (the patch border cuts through it), nor does missing one.
    """
    out = np.zeros((num_classes + 1, 3), np.int64)
    for k in range(num_classes + 1):
        p = pred if k == num_classes else pred[pred[:, 2] == k]
        t = truth if k == num_classes else truth[truth[:, 2] == k]
        inside = t[:, 3] > 0 if t.shape[1] > 3 else np.ones(len(t), bool)
        pairs = match(p[:, :2], t[:, :2], radius)
        hits = int(inside[pairs[:, 1]].sum())
        out[k] = (hits, len(p) - len(pairs), int(inside.sum()) - hits)
    return out


def scores(counts: np.ndarray, names: Sequence[str], prefix: str) -> dict[str, float]:
    """precision, recall, F1: overall (micro over classes), per class, and class-agnostic."""

    def prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        return prec, rec, f1

    out: dict[str, float] = {}
    per = counts[:-1]
    for key, row in (("", per.sum(0)), ("_any", counts[-1])):
        p, r, f = prf(*row.astype(float))
        out |= {f"{prefix}precision{key}": p, f"{prefix}recall{key}": r, f"{prefix}f1{key}": f}
    for name, row in zip(names, per, strict=True):
        p, r, f = prf(*row.astype(float))
        out |= {
            f"{prefix}precision/{name}": p,
            f"{prefix}recall/{name}": r,
            f"{prefix}f1/{name}": f,
        }
    return out
