"""The time budget of a sweep (`hpo.budget_minutes`): exploration first, then the winner's retrain.

The budget is wall-clock time of the whole sweep. A share of it (`explore_share`) goes to
exploration trials, each capped at `trial_minutes` of training (the config key `minutes_key`,
`trainer.max_minutes` for the train stage, which also fits the learning-rate schedule to the cap)
and pruned early by the study's pruner; the rest retrains the winning configuration once
(`hpo.retrain`). A job costs more than its training: start-up, data loading, test and pictures.
That overhead is measured on every finished job (its wall time minus the `fit_seconds` it
reports) and kept out of the next caps, so the sweep ends on time:

- no exploration trial starts unless `min_trial_minutes` of training still fit before the end of
  the exploration share; a trial that starts gets at most what is left of it;
- the retrain gets what is left of the whole budget.

So the whole sweep overruns its budget by at most one trial's minimum resource (its first epoch
when a cap falls inside an epoch), plus the error of the overhead estimate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from autoscope.errors import UserError

FINISH_S = 5.0  # seconds the end of a sweep takes after its last job (pictures, summary)


def _minutes(seconds: float) -> float:
    """Seconds as minutes rounded down to 1/1000 (a cap never exceeds the room it was cut from)."""
    return math.floor(seconds / 60 * 1000) / 1000


@dataclass
class Budget:
    """A sweep's time budget, spent trial by trial (times in seconds, `time.monotonic`).

    Args:
        total_s: the whole sweep.
        explore_s: its exploration share.
        trial_s: the cap of one exploration trial.
        min_trial_s: the least training time worth starting a trial for.
        minutes_key: the override that caps a job's training (in minutes).
        retrain: whether the rest of the budget retrains the winner.
        spent_s: time already spent by earlier runs of this sweep (a resumed study).
    """

    total_s: float
    explore_s: float
    trial_s: float
    min_trial_s: float
    minutes_key: str
    retrain: bool = True
    spent_s: float = 0.0
    start: float = field(default_factory=time.monotonic)
    overhead_s: float = 0.0
    measured: list[float] = field(default_factory=list)

    @classmethod
    def from_hpo(cls, hpo: Any, spent_s: float = 0.0) -> Budget | None:
        """The budget of an `hpo` node, or None without `budget_minutes`."""
        minutes = hpo.get("budget_minutes")
        if minutes is None:
            return None
        total, share = float(minutes) * 60, float(hpo.get("explore_share", 0.5))
        trial = float(hpo.get("trial_minutes") or minutes) * 60
        least = float(hpo.get("min_trial_minutes") or 0.0) * 60
        retrain = hpo.get("retrain") or {}
        if total <= 0 or not 0 < share <= 1 or trial <= 0 or least < 0:
            raise UserError(
                f"hpo: budget_minutes={minutes} explore_share={share} trial_minutes="
                f"{hpo.get('trial_minutes')} min_trial_minutes={hpo.get('min_trial_minutes')}: "
                "want budget > 0, 0 < explore_share <= 1, trial_minutes > 0"
            )
        if least > trial:
            raise UserError(
                f"hpo.min_trial_minutes ({least / 60:g}) exceeds hpo.trial_minutes ({trial / 60:g})"
            )
        return cls(
            total_s=total,
            explore_s=total * share,
            trial_s=trial,
            min_trial_s=least,
            minutes_key=str(hpo.get("minutes_key") or "trainer.max_minutes"),
            retrain=bool(retrain.get("enabled", True)) and share < 1,
            spent_s=float(spent_s),
        )

    def elapsed(self) -> float:
        """Seconds of the budget used (this process plus earlier runs of the same study)."""
        return self.spent_s + time.monotonic() - self.start

    def left(self) -> float:
        """Seconds left of the whole budget."""
        return self.total_s - self.elapsed()

    def explore_left(self) -> float:
        """Seconds left of the exploration share."""
        return self.explore_s - self.elapsed()

    def trial_minutes(self) -> float | None:
        """The training cap of the next exploration trial, or None: exploration is over."""
        room = self.explore_left() - self.overhead_s
        if room <= 0 or room < self.min_trial_s:
            return None
        return _minutes(min(self.trial_s, room))

    def retrain_minutes(self) -> float | None:
        """The training cap of the winner's retrain (what is left), or None when nothing is.

        Keeps `FINISH_S` for the end of the sweep (best.yaml, pictures, the MLflow parent run).
        """
        room = self.left() - self.overhead_s - FINISH_S
        return _minutes(room) if self.retrain and room > 0 else None

    def observe(self, wall_s: float, fit_s: float | None, cap_s: float) -> None:
        """Learn a job's overhead: its wall time minus its training time.

        The training time is the `fit_seconds` the job reported, else its cap (a job that does
        not say is assumed to have trained for all of it).
        """
        fit = min(wall_s, cap_s) if fit_s is None else float(fit_s)
        if not 0 <= fit <= wall_s:
            return
        self.measured.append(wall_s - fit)
        self.overhead_s = max(self.measured[-3:])  # the recent worst: better early than late

    def accounting(self) -> dict[str, float]:
        """The time accounting that goes into best.yaml's header and study.json."""
        return {
            "budget_minutes": round(self.total_s / 60, 3),
            "minutes_used": round(self.elapsed() / 60, 3),
            "explore_minutes": round(self.explore_s / 60, 3),
            "overhead_s": round(self.overhead_s, 1),
        }

    def describe(self) -> str:
        """One line for the sweep's log."""
        retrain = f", then the winner retrains for the rest ({self.total_s - self.explore_s:.0f}s)"
        return (
            f"budget {self.total_s / 60:g} min: exploration {self.explore_s:.0f}s in trials of "
            f"at most {self.trial_s / 60:g} min (none starts with under "
            f"{max(self.min_trial_s, 1) / 60:.2g} min left)" + (retrain if self.retrain else "")
        )
