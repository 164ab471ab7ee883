"""The toy recipe of the sweeper tests: its own `toy` config group, an `hpo` space, an objective.

Imported by the tests and by the worker scripts they start (kept out of conftest for that).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TOY_A = """\
name: a        # which choice this is (the objective reads it)
lr: 0.1        # a searched float
max_lr: ${.lr} # an interpolation that must follow the searched lr
"""
TOY_B = """\
name: b        # which choice this is
lr: 0.05       # a searched float
max_lr: ${.lr} # follows lr
depth: 2       # only this choice has it: a conditional parameter
"""
SPACE = """\
study_name: toy-${seed}   # Optuna study name
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


def objective(cfg: Any, trial: Any) -> dict:
    """The toy objective with the train_once signature; checks the interpolation followed lr."""
    assert cfg.toy.max_lr == cfg.toy.lr
    return {"val/acc": score(cfg), "run_id": None}
