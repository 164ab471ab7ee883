"""Comparing tissue masks of one slide: intersection over union across mask resolutions."""

from __future__ import annotations

import numpy as np


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two masks of the same slide (nonzero = foreground).

    Masks of different shapes are compared on the coarser grid: the finer one is reduced there by
    block majority (an integer ratio) or by nearest pixel centre. Two empty masks give 1.0.
    """
    pred, truth = np.asarray(pred) != 0, np.asarray(truth) != 0
    if pred.shape != truth.shape:
        if pred.size > truth.size:
            pred = _to_grid(pred, truth.shape)
        else:
            truth = _to_grid(truth, pred.shape)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def _to_grid(fine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask reduced onto a coarser grid of ``shape`` covering the same slide."""
    ky, kx = round(fine.shape[0] / shape[0]), round(fine.shape[1] / shape[1])
    if (
        ky >= 1
        and kx >= 1
        and abs(fine.shape[0] - ky * shape[0]) < ky
        and abs(fine.shape[1] - kx * shape[1]) < kx
    ):
        pad = np.zeros((shape[0] * ky, shape[1] * kx), bool)
        rows, cols = min(pad.shape[0], fine.shape[0]), min(pad.shape[1], fine.shape[1])
        pad[:rows, :cols] = fine[:rows, :cols]
        return pad.reshape(shape[0], ky, shape[1], kx).mean(axis=(1, 3)) >= 0.5
    rows = ((np.arange(shape[0]) + 0.5) * fine.shape[0] / shape[0]).astype(int)
    cols = ((np.arange(shape[1]) + 0.5) * fine.shape[1] / shape[1]).astype(int)
    return fine[np.minimum(rows, fine.shape[0] - 1)][:, np.minimum(cols, fine.shape[1] - 1)]
