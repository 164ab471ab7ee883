"""The toy recipe of the sweeper tests: its own `toy` config group, an `hpo` space, a task.

The task is a real Hydra task function run by `autoscope.stages.app.run_app` (so by the real
sweeper and launchers); what it does is configured by the `toy` keys (fail, prune, hang ...).
Imported by the tests and by the launcher workers they start (kept out of conftest for that).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

TOY_A = """\
name: a        # which choice this is (the objective reads it)
lr: 0.1        # a searched float
max_lr: ${.lr} # an interpolation that must follow the searched lr
fail_on: []    # trial numbers whose job raises RuntimeError
interrupt_on: null  # the trial number whose job raises KeyboardInterrupt
hang_on: null  # the trial number whose job writes started-<n> and sleeps
prune_from: null  # trials with a number >= this report once and are pruned
sleep_s: 0.0   # every job sleeps this long (time budget, parallel launchers)
minutes: 0.0   # a training cap (a budget's minutes_key): jobs sleep min(sleep_s, 60 x this)
refit: false   # set by a retrain's overrides (the retrained job scores higher)
metric: val/acc  # the key the job returns its score under
mlflow_run: false  # log an MLflow run per job (parent-run nesting)
"""
TOY_B = (
    TOY_A.replace("name: a ", "name: b ")
    .replace("lr: 0.1 ", "lr: 0.05")
    .replace(
        "mlflow_run: false  # log an MLflow run per job (parent-run nesting)\n",
        "mlflow_run: false  # log an MLflow run per job (parent-run nesting)\ndepth: 2  # only b\n",
    )
)
SPACE = """\
study_name: toy-${seed}   # Optuna study name
trial: null               # set by the sweeper per job
n_trials: 3               # counted trials
timeout_s: null           # no time budget
storage: null             # paths.optuna_storage
heartbeat_s: null         # same-host stale check only
mlflow: false             # most tests skip MLflow (one test turns it on)
start_from_base: false    # let the sampler pick trial 0
sampler:                  # seeded TPE
  _target_: optuna.samplers.TPESampler
  n_startup_trials: 2
pruner:                   # median pruning
  _target_: optuna.pruners.MedianPruner
  n_startup_trials: 1
fixed: null               # no per-trial budget overrides
params:                   # the space
  toy: {type: categorical, choices: [a, b]}
  toy.lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
  toy.depth: {type: int, low: 1, high: 4}
"""
RECIPE = """\
defaults:
  - config
  - toy: a
  - override hpo: toy3
  - _self_
"""


class Toy:
    """`toy(args)` runs `autoscope toy <recipe> -m <args>` in-process; returns the exit status."""

    def __init__(self, recipe: Path, root: Path) -> None:
        self.recipe, self.root = recipe, root

    def __call__(self, *args: str, multirun: bool = True) -> int:
        from autoscope.stages.app import run_app

        argv = (["-m"] if multirun else []) + list(args)
        return run_app("toy", "hpo_toy:task", str(self.recipe), argv, prog="autoscope toy")

    def compose(self, *overrides: str):
        from autoscope.config import compose

        return compose(str(self.recipe), list(overrides))


def write_toy(rdir: Path) -> Path:
    """Write the toy recipe and its groups into `rdir`; returns the recipe path."""
    for rel, text in {
        "toy.yaml": RECIPE,
        "toy/a.yaml": TOY_A,
        "toy/b.yaml": TOY_B,
        "hpo/toy3.yaml": SPACE,
    }.items():
        (rdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (rdir / rel).write_text(text)
    return rdir / "toy.yaml"


def score(cfg: Any) -> float:
    """A cheap deterministic objective: best near lr=0.03, choice b with depth 3."""
    v = 1.0 - (math.log10(cfg.toy.lr) + 1.5) ** 2 / 10
    if cfg.toy.name == "b":
        v += 0.05 - 0.02 * abs(cfg.toy.depth - 3)
    return v


def task(cfg: Any) -> dict:
    """The toy stage (`hpo_toy:task`): checks the interpolation followed lr, then scores."""
    import os

    import optuna
    from hydra.core.hydra_config import HydraConfig

    assert cfg.toy.max_lr == cfg.toy.lr
    Path(HydraConfig.get().runtime.output_dir, "pid.txt").write_text(str(os.getpid()))
    n = cfg.hpo.get("trial")
    t = cfg.toy
    slept = float(t.sleep_s)
    if t.minutes:
        slept = min(slept, 60 * float(t.minutes))
    if slept:
        time.sleep(slept)
    if n is not None and n in list(t.fail_on):
        raise RuntimeError("out of memory\nsecond line")
    if n is not None and n == t.interrupt_on:
        raise KeyboardInterrupt
    if n is not None and n == t.hang_on:
        Path(f"started-{n}").write_text("x")
        time.sleep(600)
    if n is not None and t.prune_from is not None and n >= t.prune_from:
        from hydra.utils import instantiate

        from autoscope.hpo.sweeper import study_spec
        from autoscope.hpo.trial import attach

        trial = attach(study_spec(cfg), int(n), instantiate(cfg.hpo.pruner))
        trial.report(score(cfg), step=0)
        raise optuna.TrialPruned()
    run_id = None
    if t.mlflow_run:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
        exp = client.get_experiment_by_name(cfg.project.name)
        run = client.create_run(exp.experiment_id, run_name=f"trial-{n}")
        client.log_metric(run.info.run_id, "val/acc", score(cfg))
        client.set_terminated(run.info.run_id)
        run_id = run.info.run_id
    value = score(cfg) + (0.01 if t.refit else 0.0)
    return {
        str(t.metric): value,
        "test/acc": value - 0.02,
        "fit_seconds": slept,
        "run_id": run_id,
        "seed": int(cfg.seed),
    }
