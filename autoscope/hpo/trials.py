"""The trials of one sweeper process: sample, launch as Hydra jobs, tell the study, log.

Kept apart from the Hydra plugin (`autoscope.hpo.sweeper`): this module knows Optuna, not Hydra;
the sweeper hands it a `launch` function (its launcher) and a `has_key` test on composed configs.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path
from typing import Any

from autoscope.atomic import write_json, write_text
from autoscope.hpo.report import save_plots, write_best_yaml
from autoscope.hpo.space import suggest, to_overrides
from autoscope.hpo.study import WORKER, counts


def log(study: str, msg: str) -> None:
    """One progress line of the sweep."""
    print(f"[hpo {study}] {msg}", flush=True)


def value_of(metrics: Any, metric: str) -> float:
    """The objective's value: `metrics[metric]` (or a bare number), finite."""
    v = metrics.get(metric) if isinstance(metrics, dict) else metrics
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        got = sorted(metrics) if isinstance(metrics, dict) else repr(metrics)
        raise ValueError(f"objective returned no finite '{metric}' (got {got})")
    return float(v)


def test_key(metric: str) -> str:
    """The held-out twin of a validation metric (`val/acc` -> `test/acc`)."""
    return "test/" + metric.split("/", 1)[1] if metric.startswith("val/") else f"test/{metric}"


def record_metrics(t: Any, metrics: Any, metric: str, wall_s: float) -> None:
    """Keep a finished job's run id, test value, fit and wall seconds on its trial."""
    t.set_user_attr("wall_seconds", round(float(wall_s), 3))
    if not isinstance(metrics, dict):
        return
    if metrics.get("run_id"):
        t.set_user_attr("run_id", str(metrics["run_id"]))
    for attr, key in (("test_value", test_key(metric)), ("fit_seconds", "fit_seconds")):
        v = metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            t.set_user_attr(attr, float(v))


def val_test_gap(trial: Any) -> float | None:
    """Validation minus held-out test value of a completed trial (None without a test)."""
    test = trial.user_attrs.get("test_value")
    return None if test is None or trial.value is None else float(trial.value) - float(test)


class TrialBatches:
    """One sweeper process's trials: ask, launch side by side, tell, log.

    Args:
        study: the Optuna study.
        specs: the search space.
        nodes: {swept group: [composed config of each choice]} (which keys each choice has).
        base_overrides: overrides every job gets (the command line's plain ones, `hpo.fixed`).
        sweep_dir: `outputs/<project>/hpo/<study>`: per-trial result.json / error.txt.
        tracker: the MLflow parent run (or None).
        metric: the key of the job's result the study optimises.
        launch: runs a list of override lists as jobs, returns Hydra JobReturns in order.
        has_key: whether a composed config node holds a dotted key.
    """

    def __init__(
        self, study, specs, nodes, base_overrides, sweep_dir, tracker, metric, *, launch, has_key
    ) -> None:
        self.study, self.specs, self.nodes = study, specs, nodes
        self.launch, self.has_key = launch, has_key
        self.base, self.sweep_dir, self.tracker, self.metric = (
            base_overrides,
            sweep_dir,
            tracker,
            metric,
        )
        self.groups = set(nodes)
        self.pending: list[Any] = []

    def _sample(self, trial: Any) -> dict[str, Any]:
        """Groups first; a key under a swept group is sampled only if the chosen choice has it."""
        params = {s.key: suggest(trial, s) for s in self.specs if s.key in self.groups}
        for s in self.specs:
            if s.key in self.groups:
                continue
            top = s.key.split(".")[0]
            if top in self.groups:
                spec = next(x for x in self.specs if x.key == top)
                node = self.nodes[top][list(spec.choices).index(params[top])]
                if not self.has_key(node, s.key):
                    continue  # the chosen group has no such key: not sampled in this trial
            params[s.key] = suggest(trial, s)
        return params

    def batch(self, n: int, n_trials: int | None, extra: list[str] | None = None) -> list[Any]:
        """Ask `n` trials, run them through the launcher side by side, tell their results.

        `extra` overrides go to these jobs only (the budget's training cap). A finished job's
        `fit_seconds` and held-out `test/...` twin of the metric are kept as trial user attrs.
        """
        from optuna.trial import TrialState

        trials, jobs, params_of = [], [], {}
        for _ in range(max(1, n)):
            t = self.study.ask()
            t.set_user_attr("worker", WORKER)
            try:
                params = self._sample(t)
            except Exception as e:
                self._fail(t, e)
                continue
            params_of[t.number] = params
            trials.append(t)
            jobs.append(
                [
                    *self.base,
                    *to_overrides(params, self.groups),
                    *(extra or []),
                    f"hpo.trial={t.number}",
                ]
            )
        self.pending = trials
        t0 = time.monotonic()
        returns = self.launch(jobs)
        seconds = time.monotonic() - t0
        done = []
        for t, ret in zip(trials, returns, strict=True):
            write_text(
                self.sweep_dir / str(t.number) / "overrides.txt",
                " ".join(jobs[trials.index(t)]) + "\n",
            )
            if ret.status.name == "COMPLETED":
                try:
                    metrics = ret.return_value
                    value = value_of(metrics, self.metric)
                except Exception as e:
                    self._fail(t, e)
                else:
                    record_metrics(t, metrics, self.metric, seconds)
                    self.study.tell(t, value)
            else:
                exc = ret._return_value
                if type(exc).__name__ == "TrialPruned":
                    self.study.tell(t, state=TrialState.PRUNED)
                elif isinstance(exc, KeyboardInterrupt):
                    self.study.tell(t, state=TrialState.FAIL)
                else:
                    self._fail(t, exc)
            done.append(self._after(t.number, seconds, n_trials))
        self.pending = []
        return [d for d in done if d is not None]

    def _fail(self, t: Any, e: BaseException) -> None:
        from optuna.trial import TrialState

        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()] or [""]
        t.set_user_attr("fail_reason", f"{type(e).__name__}: {lines[0]}"[:500])
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        write_text(self.sweep_dir / str(t.number) / "error.txt", tb)
        self.study.tell(t, state=TrialState.FAIL)

    def interrupted(self) -> None:
        """Ctrl-C: the trials of this batch are FAILed without a reason (queued again on resume)."""
        from optuna.trial import TrialState

        for t in self.pending:
            try:
                self.study.tell(t, state=TrialState.FAIL)
            except Exception:  # already told
                pass

    def _after(self, number: int, seconds: float, n_trials: int | None) -> Any:
        """One progress line, result.json and MLflow nesting for a finished trial."""
        t = self.study.get_trials(deepcopy=False)[number]
        c = counts(self.study)
        best = (
            f" | best {self.study.best_value:.4f} (#{self.study.best_trial.number})"
            if c.complete
            else ""
        )
        done = f"{c.counted}/{n_trials}" if n_trials else f"{c.counted}"
        shown = " ".join(to_overrides(dict(t.params), self.groups))
        if t.state.name == "COMPLETE":
            what = f"{self.metric}={t.value:.4f}"
        elif t.state.name == "FAIL":
            what = t.user_attrs.get("fail_reason", "interrupted")
        else:
            what = f"after epoch {t.last_step + 1}" if t.last_step is not None else ""
        line = f"trial #{t.number} {t.state.name} {what} in {seconds:.1f}s ({shown})"
        log(self.study.study_name, f"{done} {line}{best}")
        record = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "seconds": round(seconds, 3),
            **t.user_attrs,
        }
        write_json(self.sweep_dir / str(t.number) / "result.json", record)
        if self.tracker is not None:
            self.tracker.log_trial(t.number, t.value, t.user_attrs.get("run_id"))
        return t


def finish_study(
    study: Any, sweep_dir: Path, tracker: Any, *, metric: str, groups: set[str], fixed: list[str],
    recipe: str, final: dict | None = None, budget: dict | None = None,
) -> dict:  # fmt: skip
    """Write best.yaml and the pictures, close the MLflow parent run, build the result.

    `final` is the winner's retrain (`run_id`, `minutes`, its metrics), `budget` the time
    accounting of a budgeted sweep; both go into best.yaml's header and study.json.
    """
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
        "best_trial": None,
        "best_test_value": None,
        "val_test_gap": None,
        "final": final,
        "final_run_id": (final or {}).get("run_id"),
        "budget": budget,
    }
    name = study.study_name
    if c.complete:
        best = study.best_trial
        result.update(
            best_value=best.value,
            best_params=dict(best.params),
            best_run_id=best.user_attrs.get("run_id"),
            best_trial=best.number,
            best_test_value=best.user_attrs.get("test_value"),
            val_test_gap=val_test_gap(best),
        )
        path = write_best_yaml(
            sweep_dir / "best.yaml", study, metric=metric, recipe=recipe, groups=groups,
            counts=c, run_id=result["best_run_id"], fixed=fixed, final=final,
            gap=result["val_test_gap"],
        )  # fmt: skip
        result["best_yaml"] = str(path)
        log(
            name,
            f"best {metric}={best.value:.4f} at trial #{best.number} "
            f"(run {result['best_run_id']}): {path}",
        )
        if result["val_test_gap"] is not None:
            log(
                name,
                f"selection check: trial #{best.number} {metric}={best.value:.4f}, held-out "
                f"{test_key(metric)}={result['best_test_value']:.4f}, "
                f"val-test gap {result['val_test_gap']:+.4f}",
            )
    else:
        log(name, "no trial completed: no best.yaml written")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    pictures, notes = save_plots(study, sweep_dir, metric)
    for note in notes + (tracker.notes if tracker else []):
        log(name, note)
    if tracker is not None:
        files = pictures + ([Path(result["best_yaml"])] if result["best_yaml"] else [])
        tracker.finish(result, files)
    write_json(sweep_dir / "study.json", result)
    return result


def retrain(
    study: Any, bud: Any, plain: list[str], groups: set[str], extra: dict[str, Any], *,
    launch: Any, metric: str,
) -> dict | None:  # fmt: skip
    """The final share of the budget: the winner's configuration trained once more.

    The job gets the sweep's plain overrides, the best trial's parameters, `hpo.retrain.
    overrides` (a `{run_id}` in a value is the best trial's run) and what is left of the
    budget as its training cap; it is no Optuna trial. A study resumed after its retrain ran
    keeps the earlier one (`final` study attr) unless the best trial changed.
    """
    name, best = study.study_name, study.best_trial
    done = study.user_attrs.get("final") or {}
    if done.get("trial") == best.number and done.get("run_id"):
        log(name, f"retrain of trial #{best.number} already done: run {done['run_id']}")
        return done
    minutes = bud.retrain_minutes()
    if minutes is None:
        log(name, "no budget left to retrain the winner: the best trial is the final model")
        return None
    run_id = str(best.user_attrs.get("run_id") or "")
    extra = {k: (v.format(run_id=run_id) if isinstance(v, str) else v) for k, v in extra.items()}
    overrides = [
        *plain,
        *to_overrides(dict(best.params), groups),
        *to_overrides(extra),
        f"{bud.minutes_key}={minutes}",
    ]
    shown = " ".join(o for o in overrides if o not in plain)
    log(name, f"retraining the winner (trial #{best.number}) for {minutes:g} min: {shown}")
    t0 = time.monotonic()
    ret = launch([overrides])[0]
    wall = time.monotonic() - t0
    if ret.status.name != "COMPLETED":
        exc = ret._return_value
        log(
            name,
            f"retrain failed ({type(exc).__name__}: {str(exc).strip()[:300]}): "
            "the best trial stays the final model",
        )
        return None
    metrics = ret.return_value if isinstance(ret.return_value, dict) else {}
    final = {
        "trial": best.number,
        "run_id": metrics.get("run_id"),
        "minutes": minutes,
        "wall_seconds": round(wall, 1),
        "overrides": [o for o in overrides if o not in plain],
        **{
            k: float(v) for k, v in metrics.items() if k != "run_id" and isinstance(v, (int, float))
        },
    }
    study.set_user_attr("final", final)
    tk = "test/" + metric.split("/", 1)[-1]
    shown_test = f", {tk}={final[tk]:.4f}" if tk in final else ""
    log(name, f"final model: run {final['run_id']} in {wall:.0f}s{shown_test}")
    return final
