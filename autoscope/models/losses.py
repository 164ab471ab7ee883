"""Losses chosen by `_target_` in the trainer config: cross-entropy (class weights, label
smoothing) and focal loss. Class weights `balanced` are fitted from the training labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

ClassWeights = str | Sequence[float] | None


class _WeightedLoss(nn.Module):
    """Holds optional class weights: `None`, `balanced` (inverse frequency) or a list."""

    def __init__(self, class_weights: ClassWeights = None) -> None:
        super().__init__()
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError(f"class_weights: null, 'balanced' or a list, not {class_weights!r}")
        self.mode = class_weights
        w = None if class_weights is None or isinstance(class_weights, str) else class_weights
        weight = None if w is None else torch.tensor(list(w), dtype=torch.float32)
        self.register_buffer("weight", weight)

    def fit(self, class_counts: Sequence[int]) -> None:
        """Set `balanced` weights from the training-set class counts (no-op otherwise)."""
        if self.mode != "balanced":
            return
        counts = torch.tensor(list(class_counts), dtype=torch.float32).clamp_min(1.0)
        self.weight = counts.sum() / (len(counts) * counts)


class CrossEntropy(_WeightedLoss):
    """Cross-entropy with optional class weights and label smoothing.

    Args:
        label_smoothing: mass spread over all classes (0.1 is a good default from scratch).
        class_weights: null, `balanced`, or one weight per class.
    """

    def __init__(self, label_smoothing: float = 0.0, class_weights: ClassWeights = None) -> None:
        super().__init__(class_weights)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.to(logits.device)
        return F.cross_entropy(
            logits.float(), target, weight=w, label_smoothing=self.label_smoothing
        )


class FocalLoss(_WeightedLoss):
    """Focal loss (Lin et al. 2017): down-weights easy examples by `(1 - p_t) ** gamma`.

    Args:
        gamma: focusing strength (0 gives cross-entropy).
        class_weights: null, `balanced`, or one weight per class (the alpha term).
    """

    def __init__(self, gamma: float = 2.0, class_weights: ClassWeights = None) -> None:
        super().__init__(class_weights)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - logp.exp()) ** self.gamma) * logp
        if self.weight is not None:
            w = self.weight.to(logits.device)[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()
