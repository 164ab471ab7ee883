"""`autoscope train` as a Hydra app: the run keeps its job record (config, overrides, choices)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tinydata import TINY_TRAIN, make_tiny_dataset  # noqa: E402

TINY = ["++dataset.name=tiny", "model=tiny_cnn", *TINY_TRAIN, "trainer.max_epochs=1"]


def test_cli_train_records_its_hydra_job_with_the_run(tmp_path, monkeypatch, capsys) -> None:
    import mlflow

    from autoscope.cli import main

    make_tiny_dataset(tmp_path / "data" / "demo" / "datasets" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "demo", *TINY]) == 0
    assert "train done in" in capsys.readouterr().out
    jobs = list(tmp_path.glob("outputs/demo/train/jobs/*/*/.hydra"))
    assert len(jobs) == 1 and (jobs[0].parent / "train.log").is_file()
    runs = list(tmp_path.glob("outputs/demo/train/runs/*/.hydra/overrides.yaml"))
    assert len(runs) == 1 and yaml.safe_load(runs[0].read_text()) == TINY
    run_id = runs[0].parents[1].name
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/outputs/_state/mlflow.db")
    assert {a.path for a in client.list_artifacts(run_id, "hydra")} >= {
        "hydra/config.yaml",
        "hydra/overrides.yaml",
        "hydra/hydra.yaml",
    }
    assert client.get_run(run_id).data.tags["hydra.run_dir"] == str(jobs[0].parent)
