"""`autoscope train demo -m hpo=small` with the real train_once on a tiny dataset (slow)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tinydata import TINY_TRAIN, make_tiny_dataset  # noqa: E402

from autoscope.models.tracking import kept_metrics  # noqa: E402

TINY = ["++dataset.name=tiny", *TINY_TRAIN, "hpo.n_trials=2", "trainer.max_epochs=3"]


@pytest.mark.slow
def test_cli_sweep_trains_nests_runs_and_writes_best(tmp_path, monkeypatch, capsys) -> None:
    import mlflow
    import optuna
    import yaml

    from autoscope.cli import main
    from autoscope.config import compose

    make_tiny_dataset(tmp_path / "data" / "demo" / "datasets" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "demo", "-m", "hpo=small", *TINY]) == 0
    out = capsys.readouterr().out
    assert "] 2/2 trial #1" in out and "train done in" in out
    cfg = compose("demo", ["hpo=small", *TINY], "train")
    study = optuna.load_study(study_name=cfg.hpo.study_name, storage=cfg.paths.optuna_storage)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 2 and study.trials[0].user_attrs["base"] is True
    best = study.best_trial
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    run = client.get_run(best.user_attrs["run_id"])
    assert kept_metrics(run.data.metrics)["val/acc"] == pytest.approx(best.value)
    assert run.data.params["model.optimizer.lr"] == str(best.params["model.optimizer.lr"])
    assert run.data.params["trainer.max_epochs"] == "3"  # a command-line override stays
    assert run.data.params["trainer.max_minutes"] == "1.0"  # the sweep's fixed budget
    assert run.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
    sweep = Path(cfg.paths.outputs) / "hpo" / cfg.hpo.study_name
    delta = yaml.safe_load((sweep / "best.yaml").read_text())
    assert delta["model"]["optimizer"]["lr"] == pytest.approx(best.params["model.optimizer.lr"])
    assert (sweep / "history.png").is_file()
