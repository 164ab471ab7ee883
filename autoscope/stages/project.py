"""`autoscope project create`: the workspace folders and the project's MLflow experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUBDIRS = ("slides", "datasets", "raw")  # under data/<project>/


def ensure_experiment(cfg: Any) -> str:
    """Get or create the project's MLflow experiment in the SQLite store; returns its id."""
    import mlflow

    Path(cfg.paths.state).mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    exp = client.get_experiment_by_name(cfg.project.name)
    if exp is not None:
        return exp.experiment_id
    tags = {k: str(cfg.project[k]) for k in ("product", "organ", "task")}
    return client.create_experiment(
        cfg.project.name, artifact_location=Path(cfg.paths.mlflow_artifacts).as_uri(), tags=tags
    )


def create(cfg: Any) -> dict:
    """Make `data/<project>/{slides,datasets,raw}`, `outputs/<project>`, the MLflow experiment."""
    made = []
    for d in [*(Path(cfg.paths.data) / s for s in SUBDIRS), Path(cfg.paths.outputs)]:
        if not d.is_dir():
            d.mkdir(parents=True)
            made.append(str(d))
    exp_id = ensure_experiment(cfg)
    print(
        f"project '{cfg.project.name}' ({cfg.project.organ}, {cfg.project.task}): "
        f"{len(made)} folder(s) created, MLflow experiment {exp_id} at {cfg.paths.mlflow_uri}"
    )
    return {"project": cfg.project.name, "experiment_id": exp_id, "created": len(made)}
