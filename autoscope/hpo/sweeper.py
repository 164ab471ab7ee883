"""`autoscope train <recipe> -m hpo=<space>`: an Optuna study run as a Hydra-style multirun.

Each trial composes its own config (base config + the trial's parameters, see `apply.py`), saves
it under `outputs/<project>/hpo/<study>/<trial>/config.yaml` and calls the objective
(`autoscope.stages.train.train_once`). The study lives in RDB storage, so a killed sweep resumes
where it stopped; a failing trial is recorded with its reason and the study goes on.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoscope.errors import UserError
from autoscope.hpo.apply import (
    apply_params,
    check_space,
    flatten,
    group_choice_cfg,
    is_group,
    key_exists,
    to_overrides,
)
from autoscope.hpo.report import save_plots, write_atomic, write_best_yaml
from autoscope.hpo.space import base_params, parse_space, suggest
from autoscope.hpo.study import WORKER, counts, masked, open_study, recover, storage_url

Objective = Callable[[Any, Any], Any]
MAX_SAME_FAILURES = 3  # this many trials in a row failing the same way: a recipe problem, stop


def _log(study: str, msg: str) -> None:
    print(f"[hpo {study}] {msg}", flush=True)


def _value(metrics: Any, metric: str) -> float:
    """The objective's value: `metrics[metric]` (or a bare number), finite."""
    v = metrics.get(metric) if isinstance(metrics, dict) else metrics
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        got = sorted(metrics) if isinstance(metrics, dict) else repr(metrics)
        raise ValueError(f"objective returned no finite '{metric}' (got {got})")
    return float(v)


def _make_trial_fn(
    cfg: Any, objective: Objective, specs: list, fixed: dict[str, Any], sweep_dir: Path
) -> Callable:
    """Wrap `objective(cfg, trial) -> metrics` as an Optuna objective `trial -> float`.

    `fixed` overrides (the sweep's per-trial budget) come before the trial's sampled params.
    """
    from omegaconf import OmegaConf, open_dict
    from optuna import TrialPruned

    groups = [s for s in specs if is_group(cfg, s.key)]
    plain = [s for s in specs if s not in groups]

    def trial_fn(trial: Any) -> float:
        trial.set_user_attr("worker", WORKER)
        tdir = sweep_dir / str(trial.number)
        try:  # any error of the trial (its config included) fails it with a reason
            params = {s.key: suggest(trial, s) for s in groups}
            chosen = group_choice_cfg(cfg, params)  # a key the chosen group lacks: not sampled
            params.update({s.key: suggest(trial, s) for s in plain if key_exists(chosen, s.key)})
            tcfg = apply_params(cfg, {**fixed, **params})
            with open_dict(tcfg):
                tcfg.multirun = False
            head = f"# trial #{trial.number}: {' '.join(to_overrides(cfg, {**fixed, **params}))}\n"
            write_atomic(tdir / "config.yaml", head + OmegaConf.to_yaml(tcfg))
            metrics = objective(tcfg, trial)
            value = _value(metrics, str(cfg.metric))
        except (TrialPruned, KeyboardInterrupt):
            raise
        except Exception as e:
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()] or [""]
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {lines[0]}"[:500])
            write_atomic(tdir / "error.txt", traceback.format_exc())
            raise
        if isinstance(metrics, dict) and metrics.get("run_id"):
            trial.set_user_attr("run_id", str(metrics["run_id"]))
        return value

    return trial_fn


def _fixed(cfg: Any) -> dict[str, Any]:
    """`hpo.fixed`: overrides every trial gets (nested or dotted keys); each must exist."""
    from omegaconf import OmegaConf

    fixed = flatten(OmegaConf.to_container(cfg.hpo.fixed)) if cfg.hpo.get("fixed") else {}
    for k in fixed:
        if not key_exists(cfg, str(k)):
            raise UserError(f"hpo.fixed['{k}']: no such key in the composed config (a typo?)")
    return {str(k): v for k, v in fixed.items()}


def _check_budget(hpo: Any) -> tuple[int | None, float | None]:
    n, t = hpo.get("n_trials"), hpo.get("timeout_s")
    if n is None and t is None:
        raise UserError("hpo: set n_trials or timeout_s (both null would run forever)")
    if n is not None and int(n) < 1:
        raise UserError(f"hpo.n_trials must be >= 1, got {n}")
    return (None if n is None else int(n)), (None if t is None else float(t))


def _trial_line(t: Any, metric: str, seconds: float, cfg: Any) -> str:
    shown = " ".join(to_overrides(cfg, t.params))
    if t.state.name == "COMPLETE":
        what = f"{metric}={t.value:.4f}"
    elif t.state.name == "FAIL":
        what = t.user_attrs.get("fail_reason", "interrupted")
    else:
        what = f"at step {t.last_step}" if t.last_step is not None else ""
    return f"trial #{t.number} {t.state.name} {what} in {seconds:.1f}s ({shown})"


def run_study(cfg: Any, objective: Objective) -> dict:
    """Run (or resume) the Optuna study described by `cfg.hpo` with `objective(cfg, trial)`.

    Args:
        cfg: the composed base config (`cfg.hpo` holds the space; `cfg.recipe` is needed when a
            config group such as `model` is searched).
        objective: `objective(trial_cfg, trial) -> dict` holding `cfg.metric` (and `run_id`);
            it may raise `optuna.TrialPruned`.

    Returns:
        `best_value, best_params, best_run_id, n_complete, n_pruned, n_failed, study_name,
        best_yaml` (best_* are None while no trial has completed).

    Raises:
        UserError: no or an invalid search space, an unknown key, an unusable storage.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    if not cfg.get("hpo") or not cfg.hpo.get("params"):
        raise UserError("train -m needs a search space: add hpo=<space> (see conf/hpo/*.yaml)")
    specs = parse_space(cfg.hpo.params)
    check_space(cfg, specs)
    fixed = _fixed(cfg)
    n_trials, timeout = _check_budget(cfg.hpo)
    study = open_study(cfg)
    name = study.study_name
    sweep_dir = Path(cfg.paths.outputs) / "hpo" / name
    for line in recover(study):
        _log(name, line)
    if cfg.hpo.get("start_from_base") and not study.get_trials(deepcopy=False):
        base = base_params(cfg, specs)
        if base:
            study.enqueue_trial(base, user_attrs={"base": True})
            _log(name, f"trial #0 runs the recipe's values: {' '.join(to_overrides(cfg, base))}")
    tracker = None
    if cfg.hpo.get("mlflow", True):
        from autoscope.hpo.tracking import StudyRun

        tracker = StudyRun(cfg, study)
    c = counts(study)
    budget = f"{n_trials} trials" if n_trials else "no trial limit"
    _log(
        name,
        f"{c.counted} trial(s) done of {budget}"
        + (f", {timeout:.0f}s budget" if timeout else "")
        + f"; storage {masked(storage_url(cfg))}; outputs {sweep_dir}",
    )
    trial_fn = _make_trial_fn(cfg, objective, specs, fixed, sweep_dir)
    start = t0 = time.monotonic()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's traceback: error.txt
    repeated: list[str] = []  # reasons of the consecutive failures of this worker
    try:
        while True:
            for line in recover(study):  # other workers' stale trials (heartbeat) are queued again
                _log(name, line)
            c = counts(study)
            if n_trials is not None and c.counted + c.running >= n_trials:
                break
            if timeout is not None and time.monotonic() - start >= timeout:
                _log(name, f"time budget of {timeout:.0f}s reached")
                break
            t0 = time.monotonic()
            study.optimize(trial_fn, n_trials=1, catch=(Exception,))
            t = _after_trial(cfg, study, sweep_dir, tracker, time.monotonic() - t0, n_trials)
            reason = t.user_attrs.get("fail_reason") if t is not None else None
            repeated = repeated + [reason] if reason else []
            if len(repeated) >= MAX_SAME_FAILURES and len(set(repeated[-MAX_SAME_FAILURES:])) == 1:
                raise UserError(
                    f"hpo: {MAX_SAME_FAILURES} trials in a row failed with {reason} "
                    f"(traceback: {sweep_dir / str(t.number) / 'error.txt'})"
                )
    except KeyboardInterrupt:
        _after_trial(cfg, study, sweep_dir, tracker, time.monotonic() - t0, n_trials)
        if tracker is not None:
            tracker.client.set_terminated(tracker.run_id, "KILLED")
        _log(name, "interrupted: run the same command again to resume")
        raise
    except UserError:
        if tracker is not None:
            tracker.client.set_terminated(tracker.run_id, "FAILED")
        raise
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return _finish(cfg, study, sweep_dir, tracker)


def _after_trial(
    cfg: Any, study: Any, sweep_dir: Path, tracker: Any, seconds: float, n_trials: int | None
) -> Any:
    """Log the trial this worker just ran: one progress line, result.json, MLflow nesting.

    Returns that trial (a FrozenTrial), or None when this worker has run none.
    """
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == WORKER]
    if not mine:
        return None
    t = mine[-1]
    c = counts(study)
    best = ""
    if c.complete:
        best = f" | best {study.best_value:.4f} (#{study.best_trial.number})"
    done = f"{c.counted}/{n_trials}" if n_trials else f"{c.counted}"
    _log(study.study_name, f"{done} {_trial_line(t, str(cfg.metric), seconds, cfg)}{best}")
    record = {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": t.params,
        "seconds": round(seconds, 3),
        **t.user_attrs,
    }
    write_atomic(sweep_dir / str(t.number) / "result.json", json.dumps(record, indent=2) + "\n")
    if tracker is not None:
        tracker.log_trial(t.number, t.value, t.user_attrs.get("run_id"))
    return t


def _finish(cfg: Any, study: Any, sweep_dir: Path, tracker: Any) -> dict:
    """Write best.yaml and the pictures, close the MLflow parent run, build the result."""
    c = counts(study)
    result: dict[str, Any] = {
        "best_value": None,
        "best_params": None,
        "best_run_id": None,
        "n_complete": c.complete,
        "n_pruned": c.pruned,
        "n_failed": c.failed,
        "study_name": study.study_name,
        "best_yaml": None,
    }
    name = study.study_name
    if c.complete:
        best = study.best_trial
        result.update(
            best_value=best.value,
            best_params=dict(best.params),
            best_run_id=best.user_attrs.get("run_id"),
        )
        path = write_best_yaml(cfg, study, sweep_dir / "best.yaml", c, result["best_run_id"])
        result["best_yaml"] = str(path)
        _log(
            name,
            f"best {cfg.metric}={best.value:.4f} at trial #{best.number} "
            f"(run {result['best_run_id']}): {path}",
        )
    else:
        _log(name, "no trial completed: no best.yaml written")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    pictures, notes = save_plots(study, sweep_dir, str(cfg.metric))
    for note in notes + (tracker.notes if tracker else []):
        _log(name, note)
    if tracker is not None:
        files = pictures + ([Path(result["best_yaml"])] if result["best_yaml"] else [])
        tracker.finish(result, files)
    return result
