"""The LightningModule of cell detection: focal loss on centre heatmaps, matched P/R/F1 metrics.

Shares the optimiser, schedule and photometric augmentation of `PatchClassifierModule`; the
flips/rot90s are drawn by the data module's loader (they turn the heatmaps too). Validation and
test find peaks (`det_points.find_peaks`, distance NMS) and match them to the truth points of
the data module (Hungarian, within `match_um`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from autoscope.models.classifier import PatchClassifier
from autoscope.models.det_points import count_matches, find_peaks, nms_distance, scores
from autoscope.models.module import PatchClassifierModule


@dataclass(frozen=True)
class DetectParams:
    """How heatmaps become cells (`model.detect`; the engine's defaults too).

    Attributes:
        threshold: lowest peak probability kept.
        nms_um: detections closer than this are one cell (the strongest kept).
        match_um: a detection within this of a true cell of its class is a hit.
    """

    threshold: float = 0.4
    nms_um: float = 3.0
    match_um: float = 3.0


class HeatmapFocalLoss(nn.Module):
    """Penalty-reduced focal loss on per-class centre heatmaps (CenterNet), per centre.

    Args:
        alpha: focusing exponent of the probabilities.
        beta: how much the Gaussian round a centre lowers the penalty of its pixels.
        label_smoothing: unused (kept so the shared `fit/default` loss keys merge in).
        class_weights: unused (idem).
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 4.0,
        label_smoothing: float = 0.0,
        class_weights: object = None,
    ) -> None:
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`logits` float `[N,C,H,W]`; `target` uint8 `[N,H,W,C]` (x 255) or float `[N,C,H,W]`."""
        if target.dtype == torch.uint8:
            target = target.permute(0, 3, 1, 2).float() / 255.0
        logits = logits.float()
        p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
        peak = nn.functional.max_pool2d(target, 3, 1, 1)
        pos = ((target >= peak) & (target > 0.5)).float()
        log_p, log_q = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
        pos_loss = -(log_p * (1 - p) ** self.alpha * pos).sum()
        neg_loss = -(log_q * p**self.alpha * (1 - target) ** self.beta * (1 - pos)).sum()
        return (pos_loss + neg_loss) / pos.sum().clamp_min(1.0)


class DetModule(PatchClassifierModule):
    """Train a heatmap PatchClassifier; logs `train|val|test/loss` and `val|test/{f1,precision,
    recall}` (overall, `_any` class-agnostic, per class `/<class>`).

    Args: as `PatchClassifierModule` plus `detect` (peak threshold, NMS, match radius).
    """

    def __init__(
        self,
        model: PatchClassifier,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None,
        num_classes: int,
        detect: DetectParams | None = None,
    ) -> None:
        super().__init__(model, loss, optimizer, scheduler, num_classes, tta=False)
        self.detect = detect or DetectParams()
        self.counts = {s: np.zeros((num_classes + 1, 3), np.int64) for s in ("val", "test")}
        self.test_cells: list[np.ndarray] = []  # per test patch: x, y, class, probability

    def _dm(self):  # noqa: ANN202 - the attached DetDataModule
        return self._trainer.datamodule if self._trainer is not None else None

    def cells(self, logits: torch.Tensor) -> list[np.ndarray]:
        """Detections per patch (input pixels) of a batch of heatmap logits."""
        dm = self._dm()
        mpp = float(getattr(dm, "mpp", 0) or 1.0)
        peaks = find_peaks(torch.sigmoid(logits.float()), threshold=self.detect.threshold)
        return [nms_distance(p, self.detect.nms_um / mpp) for p in peaks]

    def _evaluate(self, split: str, batch: tuple) -> list[np.ndarray]:
        x, y, idx = batch
        logits = self(x)
        self.log(f"{split}/loss", self.loss(logits, y), on_epoch=True, batch_size=len(y))
        dm = self._dm()
        found = self.cells(logits)
        if dm is not None and split in getattr(dm, "truth", {}):
            radius = self.detect.match_um / float(dm.mpp)
            for i, pred in zip(idx.tolist(), found, strict=True):
                self.counts[split] += count_matches(
                    pred, dm.truth[split][i], radius, self.num_classes
                )
        return found

    def _log_counts(self, split: str, prog_bar: bool = False) -> None:
        dm = self._dm()
        names = list(getattr(dm, "class_names", []) or [])
        if len(names) != self.num_classes:
            names = [str(k) for k in range(self.num_classes)]
        self.log_dict(scores(self.counts[split], names, f"{split}/"), prog_bar=prog_bar)
        self.counts[split][:] = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(self.augment_batch(x)), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        """Nothing to compute: training logs its loss only."""

    def validation_step(self, batch: tuple, _: int) -> None:
        self._evaluate("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_counts("val", prog_bar=True)

    def test_step(self, batch: tuple, _: int) -> None:
        self.test_cells.extend(self._evaluate("test", batch))

    def on_test_epoch_start(self) -> None:
        self.test_cells = []

    def on_test_epoch_end(self) -> None:
        self.test_counts = self.counts["test"].copy()
        self._log_counts("test")
