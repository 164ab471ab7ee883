"""The train stage end to end on a tiny dataset: MLflow SQLite store, artefacts, reproducibility."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tinydata import make_tiny_dataset  # noqa: E402

from autoscope.config import compose  # noqa: E402
from autoscope.errors import UserError  # noqa: E402

TINY = [
    "model.net.widths=[8,16]",
    "model.net.depths=[1,1]",
    "model.net.stem_width=8",
    "model.input_px=32",
    "trainer.max_epochs=2",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=64",
    "trainer.sample_grid=8",
    "trainer.threads=1",
    "trainer.max_minutes=null",  # schedule by steps only: bit-reproducible on CPU
]


def tiny_cfg(ws: Path, *extra: str):
    """The demo recipe on a tiny dataset inside the workspace `ws`."""
    ds = ws / "data" / "demo" / "datasets" / "tiny"
    if not ds.exists():
        make_tiny_dataset(ds)
    return compose("demo", [f"paths.workspace={ws}", "++dataset.name=tiny", *TINY, *extra], "train")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    from autoscope.stages import train

    ws = tmp_path_factory.mktemp("ws")
    cfg = tiny_cfg(ws)
    return cfg, train.run(cfg)


def test_train_logs_run_and_writes_model(trained) -> None:
    import mlflow
    import torch

    from autoscope.models.classifier import PatchClassifier

    cfg, out = trained
    assert out["val/acc"] >= 0.9 and out["test/acc"] >= 0.9
    run_dir = Path(cfg.paths.outputs) / "train" / "runs" / out["run_id"]
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["num_classes"] == 2 and spec["input"]["patch_px"] == 32
    assert spec["input"]["mpp"] == pytest.approx(1.0)
    model = PatchClassifier.from_files(run_dir / "spec.json", run_dir / "model.pt")
    assert model(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 2)

    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    assert cfg.paths.mlflow_uri.startswith("sqlite:///")
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "demo"
    for tag in ("dataset_version", "dataset_name", "code_version", "project"):
        assert run.data.tags[tag]
    assert run.data.params["model.net._target_"] == "autoscope.models.archs.small_resnet"
    assert {"val/acc", "val/loss", "train/loss_epoch", "test/acc", "test/f1/tumor"} <= set(
        run.data.metrics
    )
    assert len(client.get_metric_history(out["run_id"], "val/acc")) >= 2
    arts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"model.pt", "spec.json", "confusion_matrix.png", "sample_predictions.png"} <= arts


def test_same_seed_same_metrics(trained, tmp_path: Path) -> None:
    from autoscope.stages import train

    cfg, first = trained
    again = train.train_once(tiny_cfg(tmp_path))
    for key in ("val/acc", "val/loss", "test/loss"):
        assert again[key] == pytest.approx(first[key], abs=1e-6)


def test_missing_dataset_is_user_error(tmp_path: Path) -> None:
    from autoscope.stages import train

    cfg = compose("demo", [f"paths.workspace={tmp_path}", "++dataset.name=nope"], "train")
    with pytest.raises(UserError, match="nope"):
        train.run(cfg)


def test_pruned_trial_marks_run_killed(tmp_path: Path) -> None:
    """With an Optuna trial, the pruning callback reports cfg.metric; a pruned run is KILLED."""
    import mlflow
    import optuna

    from autoscope.stages import train

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(2.0))
    trial = study.ask()
    cfg = tiny_cfg(tmp_path, "trainer.max_epochs=1")
    with pytest.raises(optuna.TrialPruned):
        train.train_once(cfg, trial)
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    exp = client.get_experiment_by_name("demo")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "KILLED"
    assert trial.number == 0 and study.trials[0].intermediate_values  # the metric was reported


def test_csv_logger_trains_without_mlflow(tmp_path: Path) -> None:
    """`logger=csv`: no MLflow store; the run id is the run name, the run folder holds it all."""
    from autoscope.stages import train

    cfg = tiny_cfg(tmp_path, "logger=csv", "logger.run_name=csv-run", "trainer.max_epochs=1")
    out = train.train_once(cfg)
    assert out["run_id"] == "csv-run" and 0.0 <= out["val/acc"] <= 1.0
    run_dir = Path(cfg.paths.outputs) / "train" / "runs" / "csv-run"
    for name in ("model.pt", "spec.json", "metrics.csv", "hparams.yaml", "confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    hparams = (run_dir / "hparams.yaml").read_text()
    assert "status: FINISHED" in hparams and "tags.dataset_name: tiny" in hparams
    assert "model.net._target_: autoscope.models.archs.small_resnet" in hparams
    assert "val/acc" in (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert not (Path(cfg.paths.state) / "mlflow.db").exists()


def test_second_mlflow_store_is_one_override(tmp_path: Path) -> None:
    """`logger.tracking_uri=<another store>` records the run (and the experiment) there."""
    import mlflow

    from autoscope.stages import train

    uri = f"sqlite:///{tmp_path}/other.db"
    cfg = tiny_cfg(tmp_path, f"logger.tracking_uri={uri}", "trainer.max_epochs=1")
    out = train.train_once(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "demo" and exp.tags["task"] == "tissue_classification"
    assert not (Path(cfg.paths.state) / "mlflow.db").exists()
