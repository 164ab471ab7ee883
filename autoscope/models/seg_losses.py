"""Segmentation loss: soft Dice + cross-entropy, both blind to the ignore label (255)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from autoscope.datasets.seg_masks import IGNORE
from autoscope.models.losses import ClassWeights, _WeightedLoss

__all__ = ["IGNORE", "DiceCE"]


class DiceCE(_WeightedLoss):
    """`ce_weight x cross-entropy + dice_weight x (1 - mean soft Dice)` over annotated pixels.

    Args:
        ce_weight: weight of the pixel cross-entropy.
        dice_weight: weight of the soft Dice term (classes present in the batch's truth or
            prediction; robust to class imbalance).
        label_smoothing: cross-entropy soft targets.
        class_weights: null, `balanced` (inverse pixel frequency, fitted from the training
            masks' class pixel counts) or one weight per class (cross-entropy only).
        ignore_index: the mask value that takes no part (255: unannotated).
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        label_smoothing: float = 0.0,
        class_weights: ClassWeights = None,
        ignore_index: int = IGNORE,
    ) -> None:
        super().__init__(class_weights)
        self.ce_weight, self.dice_weight = float(ce_weight), float(dice_weight)
        self.label_smoothing, self.ignore_index = float(label_smoothing), int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`logits` float `[N,C,H,W]`, `target` int `[N,H,W]` (class index or `ignore_index`)."""
        logits, target = logits.float(), target.long()
        w = None if self.weight is None else self.weight.to(logits.device)
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0  # a batch without annotated pixels: no gradient
        loss = logits.new_zeros(())
        if self.ce_weight:
            ce = F.cross_entropy(
                logits,
                target,
                weight=w,
                ignore_index=self.ignore_index,
                label_smoothing=self.label_smoothing,
            )
            loss = loss + self.ce_weight * ce
        if self.dice_weight:
            probs = torch.softmax(logits, dim=1) * valid.unsqueeze(1)
            onehot = F.one_hot(torch.where(valid, target, 0), logits.shape[1]).permute(0, 3, 1, 2)
            onehot = onehot.float() * valid.unsqueeze(1)
            inter = (probs * onehot).sum((0, 2, 3))
            total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
            present = total > 0
            dice = (2 * inter[present] + 1.0) / (total[present] + 1.0)
            loss = loss + self.dice_weight * (1.0 - dice.mean())
        return loss
