"""One console line per training epoch: loss, the monitored metric and its best, time left.

Lightning's progress bar is off (one line per epoch reads better in logs and sweeps); this
callback (`trainer.callbacks.progress` in `conf/trainer/cpu_fast.yaml`) prints, e.g.::

    epoch 3/40 loss 0.452 val/acc 0.9356 (best 0.9356) 1m42s elapsed, 3m18s left of 5.0 min

The line of an epoch with validation is printed when its validation ends (so it comes before a
pruning decision on that epoch); an epoch without validation prints at its end. Sanity-check
validation and `trainer.validate`/`test` after the fit print nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn


def clock(seconds: float) -> str:
    """`42s`, `1m42s`, `1h05m`: a short wall-clock span."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class EpochProgress(L.Callback):
    """Prints one flushed line per training epoch (on the global-zero process only).

    Args:
        monitor: the metric shown with its best so far (`cfg.metric`, e.g. `val/acc`).
        mode: `max` or `min`: which way `monitor` is better.
        max_minutes: the fit's wall-clock budget (`trainer.max_minutes`); None: no "left" part.
        trial: the Optuna trial number of a sweep job; its lines start with `[trial #N]`.
    """

    def __init__(
        self,
        monitor: str = "val/acc",
        mode: str = "max",
        max_minutes: float | None = None,
        trial: int | None = None,
    ) -> None:
        self.monitor, self.mode = monitor, mode
        self.max_minutes = float(max_minutes) if max_minutes else None
        self.prefix = f"[trial #{trial}] " if trial is not None else ""
        self.best: float | None = None
        self._t0 = time.monotonic()
        self._loss: torch.Tensor | None = None
        self._steps = 0
        self._printed = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self.best = time.monotonic(), None  # the clock Lightning's max_time uses too

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss, self._steps, self._printed = None, 0, False

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):  # summed on the device: no sync per step
            loss = loss.detach().float()
            self._loss = loss if self._loss is None else self._loss + loss
            self._steps += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        value = float(value) if value is not None else None
        if value is not None and math.isfinite(value):
            better = max if self.mode == "max" else min
            self.best = value if self.best is None else better(self.best, value)
        self._say(trainer, value)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._printed:  # an epoch without validation
            self._say(trainer, None)

    def line(self, epoch: int, max_epochs: int | None, value: float | None) -> str:
        """The epoch's line (`epoch` counts from 1, like the shown `max_epochs`)."""
        parts = [f"{self.prefix}epoch {epoch}" + (f"/{max_epochs}" if max_epochs else "")]
        if self._steps:
            parts.append(f"loss {float(self._loss) / self._steps:.3f}")
        if value is not None:
            best = f" (best {self.best:.4f})" if self.best is not None else ""
            parts.append(f"{self.monitor} {value:.4f}{best}")
        elapsed = time.monotonic() - self._t0
        text = " ".join(parts) + f" {clock(elapsed)} elapsed"
        if self.max_minutes:
            left = self.max_minutes * 60 - elapsed
            text += f", {clock(left)} left of {self.max_minutes:.1f} min"
        return text

    def _say(self, trainer: L.Trainer, value: float | None) -> None:
        self._printed = True
        if not trainer.is_global_zero:
            return
        max_epochs = trainer.max_epochs if (trainer.max_epochs or 0) > 0 else None
        print(self.line(trainer.current_epoch + 1, max_epochs, value), flush=True)
