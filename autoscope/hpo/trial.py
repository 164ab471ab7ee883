"""The worker side of a sweep: a job launched for Optuna trial N reports to that trial.

The sweeper asks the study for a trial and launches a job with `hpo.trial=<N>`; the job (in this
process, a joblib worker, or a SLURM node) attaches to the same trial through the shared RDB
storage, so a pruning callback can report its validation curve and be stopped early.
"""

from __future__ import annotations

import threading
from typing import Any

from autoscope.errors import UserError
from autoscope.hpo.study import StudySpec, open_storage


def attach(spec: StudySpec, number: int, pruner: Any = None) -> Any:
    """The live `optuna.Trial` number `number` of study `spec` (for reports and pruning).

    Args:
        spec: the study (name and storage) the sweeper runs.
        number: the trial number the sweeper gave this job (`hpo.trial`).
        pruner: the study's pruner (the same `hpo.pruner` the sweeper uses), for `should_prune`.

    Raises:
        UserError: no such study or trial in the storage.
    """
    import optuna

    storage = open_storage(spec)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, pruner=pruner)
    except KeyError:
        raise UserError(f"hpo.trial={number}: no study '{spec.name}' in the storage") from None
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise UserError(f"hpo.trial={number}: study '{spec.name}' has no such trial")
    trial = optuna.trial.Trial(study, found[0]._trial_id)
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
