"""Learning-rate schedules that finish on time: progress is steps done or time spent, whichever
is further, so a wall-clock budget (`trainer.max_minutes`) still ends with a fully annealed lr."""

from __future__ import annotations

import math
import time

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosine(LRScheduler):
    """Linear warm-up to the optimiser's lr, then cosine decay (the one-cycle shape).

    Args:
        optimizer: the optimiser; its lr is the peak.
        total_steps: optimiser steps of the whole fit (filled in by the LightningModule).
        warmup_pct: share of the progress spent warming up.
        div_factor: start lr = peak / div_factor.
        final_div_factor: end lr = start lr / final_div_factor.
        budget_minutes: wall-clock budget of the fit; None schedules by steps only (then runs
            are reproducible: the lr does not depend on the machine's speed).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_pct: float = 0.15,
        div_factor: float = 25.0,
        final_div_factor: float = 1.0e3,
        budget_minutes: float | None = None,
    ) -> None:
        self.total_steps = max(1, int(total_steps))
        self.warmup_pct = float(warmup_pct)
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)
        self.budget_s = None if budget_minutes is None else 60.0 * float(budget_minutes)
        self.t0 = time.monotonic()
        super().__init__(optimizer)

    def progress(self) -> float:
        """Fraction of the schedule done, in [0, 1]."""
        p = self.last_epoch / self.total_steps
        if self.budget_s:
            p = max(p, (time.monotonic() - self.t0) / self.budget_s)
        return min(1.0, max(0.0, p))

    def factor(self, p: float) -> float:
        """lr / peak lr at progress `p`."""
        start = 1.0 / self.div_factor
        end = start / self.final_div_factor
        if p < self.warmup_pct:
            return start + (1.0 - start) * p / self.warmup_pct
        q = (p - self.warmup_pct) / max(1e-8, 1.0 - self.warmup_pct)
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * q))

    def get_lr(self) -> list[float]:
        f = self.factor(self.progress())
        return [base * f for base in self.base_lrs]
