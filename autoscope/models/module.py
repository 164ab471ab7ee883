"""The LightningModule of patch classification: loss, metrics, optimiser and schedule."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from autoscope.models.classifier import PatchClassifier


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    """acc (micro), bal_acc (mean per-class recall) and f1 (macro) under `prefix`."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "bal_acc": MulticlassAccuracy(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class PatchClassifierModule(L.LightningModule):
    """Train a PatchClassifier; logs `train|val|test/{loss,acc,bal_acc,f1}` per epoch.

    Args:
        model: the classifier (normalises inside; training batches arrive normalised).
        loss: loss module `(logits, target) -> scalar`.
        optimizer: partial taking the parameters (a `_partial_: true` config).
        scheduler: partial taking the optimiser (and `total_steps`/`T_max` when it has one), or
            None; stepped every batch.
        num_classes: number of classes.
        tta: average the 8 flip/rot90 views at test time.
        augment: the photometric stage of the training augmentation, `uint8 [B,H,W,3] ->
            normalised float [B,3,H,W]`, run on the model's device at the start of each
            training step; None takes the attached datamodule's `photometric` (if it has one).
    """

    def __init__(
        self,
        model: PatchClassifier,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None,
        num_classes: int,
        tta: bool = False,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.loss = model, loss
        self.optimizer_fn, self.scheduler_fn = optimizer, scheduler
        self.num_classes, self.tta = num_classes, tta
        self.augment = augment
        self.train_metrics = _metrics(num_classes, "train/")
        self.val_metrics = _metrics(num_classes, "val/")
        self.test_metrics = _metrics(num_classes, "test/")
        self.test_preds: list[torch.Tensor] = []
        self.test_targets: list[torch.Tensor] = []
        self.test_probs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; uint8 input is normalised inside, float input must be normalised already."""
        return self.model(x, normalize=False)

    def augment_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The photometric stage on a uint8 training batch already on the model's device.

        Runs at the start of `training_step` (after the transfer; outside autocast, so in
        float32); a batch that is not uint8 or has no augmentation to take passes unchanged.
        """
        trainer = self._trainer
        dm = trainer.datamodule if trainer is not None else None
        augment = self.augment or getattr(dm, "photometric", None)
        if augment is None or x.dtype != torch.uint8:
            return x
        with torch.autocast(x.device.type, enabled=False):
            # dense strides: oneDNN's CPU conv backward crashes (SIGSEGV) on some batches of
            # the flipped/rotated views' strides (a 35-patch batch on 2 threads, torch 2.x)
            return augment(x).contiguous()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        logits = self(self.augment_batch(x))
        loss = self.loss(logits, y)
        self.train_metrics.update(logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_metrics.update(logits, y)
        self.log("val/loss", self.loss(logits, y), on_epoch=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        if self.tta:
            probs = self.model.predict_tta(x, normalize=False)
        else:
            probs = torch.softmax(self(x).float(), dim=1)
        logp = probs.clamp_min(1e-8).log()
        self.test_metrics.update(probs, y)
        self.log("test/loss", nn.functional.nll_loss(logp, y), on_epoch=True, batch_size=len(y))
        self.test_probs.append(probs.cpu())
        self.test_preds.append(probs.argmax(1).cpu())
        self.test_targets.append(y.cpu())

    def on_test_epoch_start(self) -> None:
        self.test_preds, self.test_targets, self.test_probs = [], [], []

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def on_train_epoch_start(self) -> None:
        """Train mode by the model's own rule: a frozen backbone stays in eval mode."""
        self.model.train()

    def configure_optimizers(self) -> dict:
        """The optimiser partial on the trainable parameter groups; the scheduler per batch.

        A group's lr is the optimiser's lr x its `lr_mult` (`PatchClassifier.param_groups`).
        """
        groups = self.model.param_groups()
        opt = self.optimizer_fn(params=[{"params": g["params"]} for g in groups])
        for group, spec in zip(opt.param_groups, groups, strict=True):
            group["lr"] = group["lr"] * spec["lr_mult"]
        if self.scheduler_fn is None:
            return {"optimizer": opt}
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        params = inspect.signature(self.scheduler_fn).parameters
        extra = {k: steps for k in ("total_steps", "T_max") if k in params}
        sched = self.scheduler_fn(opt, **extra)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
