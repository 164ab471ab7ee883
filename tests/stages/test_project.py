"""`autoscope project create`: folders and an MLflow experiment in SQLite, idempotent."""

import sqlite3

from autoscope.config import compose
from autoscope.stages.project import create


def test_create_twice_changes_nothing(tmp_path):
    cfg = compose("demo", [f"paths.workspace={tmp_path}"], stage="project_create")
    first = create(cfg)
    assert (tmp_path / "data" / "demo" / "slides").is_dir()
    assert (tmp_path / "data" / "demo" / "datasets").is_dir()
    assert first["created"] > 0
    second = create(cfg)
    assert second["created"] == 0
    assert second["experiment_id"] == first["experiment_id"]
    db = tmp_path / "outputs" / "_state" / "mlflow.db"
    names = [r[0] for r in sqlite3.connect(db).execute("select name from experiments")]
    assert names.count("demo") == 1
