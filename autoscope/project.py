"""Typed seams shared by every stage: the project (task, classes) and the local stores.

Library code takes these small dataclasses, never the composed config; `autoscope.config`
builds them from it (`project_spec(cfg)`, `stores_spec(cfg)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TASKS = ("tissue_classification", "tissue_segmentation", "cell_detection")


@dataclass(frozen=True)
class ClassSpec:
    """One output class: index = position in the project's list."""

    name: str
    color: str = "#808080"  # overlays, GeoJSON, reports


@dataclass(frozen=True)
class ProjectSpec:
    """What a project predicts and at which resolution."""

    name: str
    task: str = "tissue_classification"
    classes: tuple[ClassSpec, ...] = ()
    target_mpp: float | None = None
    product: str = ""
    organ: str = ""

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def class_dicts(self) -> list[dict[str, str]]:
        return [{"name": c.name, "color": c.color} for c in self.classes]


@dataclass(frozen=True)
class Stores:
    """Where state lives: the workspace folders and the local stores (all under the workspace)."""

    workspace: Path
    data: Path  # data/<project>: DVC-tracked slides and datasets
    outputs: Path  # outputs/<project>: git-ignored run outputs
    state: Path  # outputs/_state: stores shared by projects
    mlflow_uri: str
    mlflow_artifacts: Path
    optuna_storage: str
    bentoml_home: Path
    zoo: Path
    extra: dict[str, str] = field(default_factory=dict)


def ensure_experiment(project: ProjectSpec, stores: Stores) -> str:
    """Get or create the project's MLflow experiment in the tracking store; returns its id."""
    import mlflow

    stores.state.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=stores.mlflow_uri)
    exp = client.get_experiment_by_name(project.name)
    if exp is not None:
        return exp.experiment_id
    tags = {"product": project.product, "organ": project.organ, "task": project.task}
    return client.create_experiment(
        project.name, artifact_location=stores.mlflow_artifacts.as_uri(), tags=tags
    )
