"""The trials of one sweeper process: sample, launch as Hydra jobs, tell the study, log.

Kept apart from the Hydra plugin (`autoscope.hpo.sweeper`): this module knows Optuna, not Hydra;
the sweeper hands it a `launch` function (its launcher) and a `has_key` test on composed configs.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

from autoscope.atomic import write_json, write_text
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
