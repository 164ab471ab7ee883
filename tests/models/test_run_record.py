"""A training run's MLflow record: source tags, dataset input, config artefact, honest curves."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tinydata import TINY_TRAIN, make_tiny_dataset

from autoscope.config import compose


def _git_workspace(ws: Path) -> str:
    """Make `ws` a git repository with one commit (as `autoscope init` does); its sha."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "README.md").write_text("workspace\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "README.md"], ["commit", "-q", "-m", "init"]):
        subprocess.run([*git, *args], cwd=ws, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ws, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One short real run (4 epochs) on the tiny dataset, in a git workspace."""
    from autoscope.stages import train

    ws = tmp_path_factory.mktemp("ws")
    sha = _git_workspace(ws)
    make_tiny_dataset(ws / "data" / "demo" / "datasets" / "tiny")
    overrides = [f"paths.workspace={ws}", "++dataset.name=tiny", *TINY_TRAIN]
    overrides += ["trainer.max_epochs=4", "trainer.max_minutes=null", "model.optimizer.lr=0.05"]
    cfg = compose("demo", overrides, "train")
    return cfg, train.train_once(cfg), sha


def test_run_records_source_dataset_and_config(trained) -> None:
    import mlflow

    cfg, out, sha = trained
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    run = client.get_run(out["run_id"])
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == sha
    assert tags["mlflow.source.name"] == "autoscope.stages.train"
    assert tags["mlflow.source.type"] == "LOCAL"

    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "tiny" and inp.dataset.digest == tags["dataset_version"]
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    assert inp.dataset.source_type == "local"
    assert '"num_rows": 160' in inp.dataset.profile

    local = mlflow.artifacts.download_artifacts(
        run_id=out["run_id"], artifact_path="config.yaml", tracking_uri=cfg.paths.mlflow_uri
    )
    logged = yaml.safe_load(Path(local).read_text())
    assert logged["dataset"]["name"] == "tiny" and logged["trainer"]["max_epochs"] == 4
    assert logged["paths"]["workspace"] == str(cfg.paths.workspace)  # resolved, no ${...}


def test_val_curves_end_where_training_ended(trained) -> None:
    """`val/*` hold one point per validation epoch; the kept weights' figures are `kept/*`."""
    import mlflow

    from autoscope.models.tracking import kept_metrics

    cfg, out, _ = trained
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    rid = out["run_id"]
    run = client.get_run(rid)
    epochs = client.get_metric_history(rid, "epoch")
    kept_step = int(run.data.metrics["kept/step"])
    last_step = max(m.step for m in client.get_metric_history(rid, "val/acc"))
    assert kept_step < last_step, "val/acc ties at 1.0: the first epoch's checkpoint is kept"
    assert run.data.metrics["kept/val/loss"] != run.data.metrics["val/loss"]  # it used to jump
    for key in ("val/acc", "val/loss", "val/f1"):
        hist = sorted(client.get_metric_history(rid, key), key=lambda m: (m.step, m.timestamp))
        assert len(hist) == 4, key  # one per epoch: no point added after the fit
        assert len({m.step for m in hist}) == 4 and hist[-1].step <= max(e.step for e in epochs)
        assert run.data.metrics[key] == hist[-1].value  # the summary is the curve's end
        at_kept = {m.step: m.value for m in hist}[kept_step]  # the checkpoint's own evaluation
        assert run.data.metrics[f"kept/{key}"] == pytest.approx(at_kept, abs=1e-5)
        assert out[key] == pytest.approx(at_kept, abs=1e-5)  # what train returns (HPO reads it)
    accs = [m.value for m in client.get_metric_history(rid, "val/acc")]
    assert kept_metrics(run.data.metrics)["val/acc"] == pytest.approx(
        max(accs), abs=1e-6
    )  # the best checkpoint on val/acc
    assert len(client.get_metric_history(rid, "test/acc")) == 1  # logged once


def test_refit_keeps_the_last_weights_and_its_curve_end(tmp_path: Path) -> None:
    """A refit (train+val) keeps the last epoch's weights: `kept/*` is the curves' last point."""
    import mlflow

    from autoscope.stages import train

    make_tiny_dataset(tmp_path / "data" / "demo" / "datasets" / "tiny")
    overrides = [f"paths.workspace={tmp_path}", "++dataset.name=tiny", *TINY_TRAIN]
    overrides += ["trainer.max_epochs=2", "trainer.max_minutes=null", "trainer.fit_on=train+val"]
    cfg = compose("demo", overrides, "train")
    out = train.train_once(cfg)
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    metrics = client.get_run(out["run_id"]).data.metrics
    hist = client.get_metric_history(out["run_id"], "val/loss")
    assert len(hist) == 2 and metrics["kept/step"] == max(m.step for m in hist)
    assert metrics["kept/val/loss"] == pytest.approx(metrics["val/loss"], abs=1e-5)
