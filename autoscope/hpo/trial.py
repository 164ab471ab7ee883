"""The worker side of a sweep: a job launched for Optuna trial N reports to that trial.

The sweeper asks the study for a trial and launches a job with `hpo.trial=<N>`; the job (in this
process, a joblib worker, or a SLURM node) attaches to the same trial through the shared RDB
storage, so a pruning callback can report its validation curve and be stopped early. When the
pruner stops it, the job says so at once in one line (`[hpo <study>] trial #5 pruned at epoch 2:
val/acc 0.8812 (rung 0 keeps the best 1/3 of its 6 trials)`), epochs counted from 1 like the
training's progress lines (the Optuna step is the 0-based epoch).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import optuna

from autoscope.errors import UserError
from autoscope.hpo.study import StudySpec, open_storage
from autoscope.hpo.trials import log


class ReportingTrial(optuna.trial.Trial):
    """An `optuna.Trial` that prints one line the moment its pruner stops it.

    Args:
        study: the loaded study.
        trial_id: the storage id of the trial.
        metric: the name of the reported value (`cfg.metric`) in that line.
    """

    def __init__(self, study: Any, trial_id: int, metric: str = "value") -> None:
        super().__init__(study, trial_id)
        self.metric = metric

    def should_prune(self) -> bool:
        """Optuna's decision; a prune is said (epoch, value, the pruner's rule) before it acts."""
        pruned = super().should_prune()
        if pruned:
            frozen = self.storage.get_trial(self._trial_id)
            log(self.study.study_name, pruned_line(self.study, frozen, self.metric))
        return pruned


def pruned_line(study: Any, trial: Any, metric: str) -> str:
    """`trial #5 pruned at epoch 2: val/acc 0.8812 (<what the pruner decided on>)`."""
    step = trial.last_step
    value = trial.intermediate_values.get(step, math.nan) if step is not None else math.nan
    head = f"trial #{trial.number} pruned at epoch {'?' if step is None else step + 1}"
    try:
        why = _why(study.pruner, study, trial, step, value)
    except Exception:  # the explanation must never stop the prune
        why = type(study.pruner).__name__
    return f"{head}: {metric} {value:.4f} ({why})"


def _why(pruner: Any, study: Any, trial: Any, step: int, value: float) -> str:
    """What the pruner's rule was for this trial at this step, in a few words."""
    P = optuna.pruners
    if not math.isfinite(value):
        return "the value is not finite"
    if isinstance(pruner, P.PercentilePruner):  # MedianPruner: percentile 50
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        vals = [t.intermediate_values[step] for t in done if step in t.intermediate_values]
        if not vals:
            return f"{type(pruner).__name__}: no finished trial reached this epoch"
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        pct = float(pruner._percentile)
        cut = float(np.nanpercentile(vals, 100 - pct if maximize else pct))
        where = f"of {len(vals)} finished trials at this epoch"
        if pct == 50:
            return f"{'below' if maximize else 'above'} the median {cut:.4f} {where}"
        return f"outside the best {pct:g}% {where} (cut {cut:.4f})"
    if isinstance(pruner, P.HyperbandPruner | P.SuccessiveHalvingPruner):
        rungs = sum(k.startswith("completed_rung_") for k in trial.system_attrs)
        key, eta = f"completed_rung_{rungs - 1}", pruner._reduction_factor
        others = [t for t in study.get_trials(deepcopy=False) if key in t.system_attrs]
        bracket = ""
        if isinstance(pruner, P.HyperbandPruner):
            b = pruner._get_bracket_id(study, trial)
            others = [t for t in others if pruner._get_bracket_id(study, t) == b]
            bracket = f"Hyperband bracket {b}, "
        return f"{bracket}rung {rungs - 1} keeps the best 1/{eta} of its {len(others)} trials"
    if isinstance(pruner, P.ThresholdPruner):
        return f"outside [{pruner._lower}, {pruner._upper}]"
    if isinstance(pruner, P.PatientPruner):
        wrapped = pruner._wrapped_pruner
        inner = f"; {_why(wrapped, study, trial, step, value)}" if wrapped is not None else ""
        return f"no improvement for {pruner._patience} epochs{inner}"
    if isinstance(pruner, P.WilcoxonPruner):
        return f"worse than the best trial (Wilcoxon p < {pruner._p_threshold})"
    return type(pruner).__name__


def attach(spec: StudySpec, number: int, pruner: Any = None, metric: str = "value") -> Any:
    """The live trial number `number` of study `spec` (for reports and pruning).

    Args:
        spec: the study (name and storage) the sweeper runs.
        number: the trial number the sweeper gave this job (`hpo.trial`).
        pruner: the study's pruner (the same `hpo.pruner` the sweeper uses), for `should_prune`.
        metric: the name of the reported value (`cfg.metric`), for the line said on a prune.

    Raises:
        UserError: no such study or trial in the storage.
    """
    storage = open_storage(spec)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, pruner=pruner)
    except KeyError:
        raise UserError(f"hpo.trial={number}: no study '{spec.name}' in the storage") from None
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise UserError(f"hpo.trial={number}: study '{spec.name}' has no such trial")
    trial = ReportingTrial(study, found[0]._trial_id, metric)
    if spec.heartbeat_s:
        _heartbeat(storage, found[0]._trial_id, int(spec.heartbeat_s))
    return trial


def _heartbeat(storage: Any, trial_id: int, every_s: int) -> None:
    """Record this job's heartbeat for its trial while the process lives (stale-trial recovery)."""

    def beat() -> None:
        stop = threading.Event()
        while not stop.wait(every_s):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # the trial finished or the storage went away: stop beating
                return

    storage.record_heartbeat(trial_id)
    threading.Thread(target=beat, daemon=True, name=f"optuna-heartbeat-{trial_id}").start()
