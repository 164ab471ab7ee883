"""The exploration loop of a sweep: batches of trials until the trial count, time or budget ends.

Knows Optuna, not Hydra: the sweeper hands it the study and its `TrialBatches`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autoscope.errors import UserError
from autoscope.hpo.study import counts, recover
from autoscope.hpo.trials import log

MAX_SAME_FAILURES = 3  # this many trials in a row failing the same way: a recipe problem, stop


def explore(
    study: Any, run: Any, *, n_trials: int | None, timeout: float | None, width: int,
    bud: Any, heartbeat: bool, sweep_dir: Path,
) -> None:  # fmt: skip
    """Launch `width` trials at a time through `run` until the study has `n_trials`, `timeout`
    seconds passed or the budget's exploration share is used.

    Raises:
        UserError: `MAX_SAME_FAILURES` trials in a row failed for the same reason.
    """
    import optuna

    name = study.study_name
    start = time.monotonic()
    repeated: list[str] = []
    while True:
        for line in recover(study):
            log(name, line)
        if heartbeat:
            optuna.storages.fail_stale_trials(study)
        c = counts(study)
        if n_trials is not None and c.counted + c.running >= n_trials:
            break
        if timeout is not None and time.monotonic() - start >= timeout:
            log(name, f"time budget of {timeout:.0f}s reached")
            break
        left = width if n_trials is None else min(width, n_trials - c.counted - c.running)
        extra: list[str] = []
        if bud is not None:
            minutes = bud.trial_minutes()
            if minutes is None:
                log(
                    name,
                    f"exploration share used ({bud.elapsed():.0f}s of {bud.total_s:.0f}s)",
                )
                break
            extra = [f"{bud.minutes_key}={minutes}"]
        t_batch = time.monotonic()
        trials = run.batch(left, n_trials, extra)
        if bud is not None:
            wall = time.monotonic() - t_batch
            for t in trials:
                if t.state.name == "COMPLETE":
                    bud.observe(wall, t.user_attrs.get("fit_seconds"), 60 * minutes)
            study.set_user_attr("budget_spent_s", round(bud.elapsed(), 1))
        for t in trials:
            reason = t.user_attrs.get("fail_reason")
            repeated = repeated + [reason] if reason else []
            if len(repeated) >= MAX_SAME_FAILURES and len(set(repeated[-3:])) == 1:
                raise UserError(
                    f"hpo: {MAX_SAME_FAILURES} trials in a row failed with {reason} "
                    f"(traceback: {sweep_dir / str(t.number) / 'error.txt'})"
                )
