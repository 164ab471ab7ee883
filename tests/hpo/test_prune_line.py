"""A pruned trial says so at once: one `[hpo <study>] trial #N pruned at epoch E: ...` line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from autoscope.hpo.study import StudySpec
from autoscope.hpo.trial import attach


def _study(tmp_path: Path, pruner: optuna.pruners.BasePruner, curves: list[list[float]]):
    """A stored study whose finished trials had these validation curves (each step judged)."""
    spec = StudySpec(name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="s", storage=spec.storage, direction="maximize")
    study.pruner = pruner
    for curve in curves:
        t = study.ask()
        for step, v in enumerate(curve):
            t.report(v, step)
            assert not t.should_prune()
        study.tell(t, curve[-1])
    return spec, study.ask().number


def _validation_end(trial, value: float, epoch: int) -> None:
    """What Lightning does at the end of a fit's validation with the real pruning callback."""
    from optuna_integration import PyTorchLightningPruningCallback

    trainer = SimpleNamespace(
        sanity_checking=False, callback_metrics={"val/acc": torch.tensor(value)}
    )
    PyTorchLightningPruningCallback(trial, monitor="val/acc").on_validation_end(
        trainer, SimpleNamespace(current_epoch=epoch)
    )


def test_median_prune_is_said_once_with_epoch_value_and_rule(tmp_path: Path, capsys) -> None:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    spec, number = _study(tmp_path, pruner, [[0.8, 0.9, 0.95], [0.9, 0.95, 0.97]])
    trial = attach(spec, number, pruner, metric="val/acc")
    _validation_end(trial, 0.5, epoch=0)  # a warm-up epoch: kept, nothing said
    assert capsys.readouterr().out == ""
    with pytest.raises(optuna.TrialPruned):
        _validation_end(trial, 0.6, epoch=1)
    assert capsys.readouterr().out.splitlines() == [
        "[hpo s] trial #2 pruned at epoch 2: val/acc 0.6000 "
        "(below the median 0.9250 of 2 finished trials at this epoch)"
    ]


def test_successive_halving_prune_names_the_rung(tmp_path: Path, capsys) -> None:
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    spec, number = _study(tmp_path, pruner, [[0.9, 0.9], [0.8, 0.95], [0.7, 0.97]])
    trial = attach(spec, number, pruner)  # no metric name given: "value"
    trial.report(0.1, 0)
    assert not trial.should_prune()
    trial.report(0.2, 1)
    assert trial.should_prune()
    assert capsys.readouterr().out.splitlines() == [
        "[hpo s] trial #3 pruned at epoch 2: value 0.2000 "
        "(rung 0 keeps the best 1/3 of its 4 trials)"
    ]
