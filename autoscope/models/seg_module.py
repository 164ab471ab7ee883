"""The LightningModule of tissue segmentation: Dice + CE over annotated pixels, Dice/IoU metrics.

Shares the optimiser, schedule, finetune and photometric-augmentation rules of
`PatchClassifierModule`; the steps and metrics are dense. Flips/rot90s are applied to images and
masks together by the data module's training loader (`seg_data`), so only colour runs here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from autoscope.models.classifier import PatchClassifier
from autoscope.models.module import PatchClassifierModule
from autoscope.models.seg_metrics import confusion, summary


class SegModule(PatchClassifierModule):
    """Train a dense PatchClassifier; logs `train|val|test/{loss,dice,iou,pixel_acc}` per epoch.

    Args: as `PatchClassifierModule`; `loss` takes `(logits [N,C,H,W], mask [N,H,W])`.
        `class_names` (optional) adds per-class `val/dice/<class>` and `val/iou/<class>`.
    """

    def __init__(
        self,
        model: PatchClassifier,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None,
        num_classes: int,
        tta: bool = False,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__(model, loss, optimizer, scheduler, num_classes, tta)
        self.class_names = list(class_names or [])
        self.cms = {s: torch.zeros(num_classes, num_classes, dtype=torch.int64) for s in SPLITS}
        self.test_masks: list[torch.Tensor] = []  # predicted masks of the test split (uint8)
        self.test_cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def _count(self, split: str, logits_or_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pred = logits_or_probs.argmax(1)
        self.cms[split] += confusion(pred, y, self.num_classes).cpu()
        return pred

    def _log_epoch(self, split: str, prog_bar: bool = False) -> None:
        dm = self._trainer.datamodule if self._trainer is not None else None
        names = self.class_names or list(getattr(dm, "class_names", []) or [])
        names = names if split != "train" and len(names) == self.num_classes else []
        self.log_dict(summary(self.cms[split], f"{split}/", names), prog_bar=prog_bar)
        if split == "test":
            self.test_cm = self.cms[split].clone()
        self.cms[split].zero_()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        logits = self(self.augment_batch(x))
        loss = self.loss(logits, y)
        self._count("train", logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self(x)
        self._count("val", logits, y)
        self.log("val/loss", self.loss(logits, y), on_epoch=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        if self.tta:
            probs = self.model.predict_tta(x, normalize=False)
        else:
            probs = torch.softmax(self(x).float(), dim=1)
        pred = self._count("test", probs, y)
        logp = probs.clamp_min(1e-8).log()
        loss = nn.functional.nll_loss(logp, y.long(), ignore_index=255)
        self.log("test/loss", loss, on_epoch=True, batch_size=len(y))
        self.test_masks.append(pred.to(torch.uint8).cpu())

    def on_test_epoch_start(self) -> None:
        self.test_masks = []

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")


SPLITS = ("train", "val", "test")
