"""`autoscope project create`: the workspace folders and the project's MLflow experiment."""

from __future__ import annotations

from typing import Any

from autoscope.config import project_spec, stores_spec
from autoscope.project import ensure_experiment

SUBDIRS = ("slides", "datasets", "raw")  # under data/<project>/


def create(cfg: Any) -> dict:
    """Make `data/<project>/{slides,datasets,raw}`, `outputs/<project>`, the MLflow experiment."""
    project, stores = project_spec(cfg), stores_spec(cfg)
    made = []
    for d in [*(stores.data / s for s in SUBDIRS), stores.outputs]:
        if not d.is_dir():
            d.mkdir(parents=True)
            made.append(str(d))
    exp_id = ensure_experiment(project, stores)
    print(
        f"project '{project.name}' ({project.organ}, {project.task}): "
        f"{len(made)} folder(s) created, MLflow experiment {exp_id} at {stores.mlflow_uri}"
    )
    return {"project": project.name, "experiment_id": exp_id, "created": len(made)}
