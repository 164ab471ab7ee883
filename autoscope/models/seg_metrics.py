"""Segmentation metrics from a pixel confusion matrix: per-class Dice and IoU, their means."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from autoscope.models.seg_losses import IGNORE


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 `[C, C]` counts (rows truth, columns prediction) over pixels that are not ignored."""
    valid = target != IGNORE
    t, p = target[valid].long(), pred[valid].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).view(
        num_classes, num_classes
    )


def dice_iou(cm: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice `2TP / (2TP + FP + FN)` and IoU `TP / (TP + FP + FN)`; NaN where a class
    is neither in the truth nor in the prediction."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
    return dice, iou


def summary(cm: np.ndarray | torch.Tensor, prefix: str, names: Sequence[str] = ()) -> dict:
    """`<prefix>dice`, `<prefix>iou` (means over the classes seen), `<prefix>acc` (pixel
    accuracy) and, given class names, `<prefix>dice/<class>`, `<prefix>iou/<class>`."""
    dice, iou = dice_iou(cm)
    cm = np.asarray(cm, np.float64)
    seen = ~np.isnan(dice)
    out = {
        f"{prefix}dice": float(dice[seen].mean()) if seen.any() else 0.0,
        f"{prefix}iou": float(iou[seen].mean()) if seen.any() else 0.0,
        f"{prefix}pixel_acc": float(np.trace(cm) / cm.sum()) if cm.sum() else 0.0,
    }
    for k, name in enumerate(names):
        if seen[k]:
            out[f"{prefix}dice/{name}"] = float(dice[k])
            out[f"{prefix}iou/{name}"] = float(iou[k])
    return out
