"""A real (tiny) training run for archive and serve tests: MLflow SQLite run + run folder.

Follows docs/contracts.md: `outputs/<project>/train/runs/<run_id>/{model.pt, spec.json}`, an MLflow
run in the project's experiment with `val/acc` and the dataset/code tags, review PNGs as artefacts.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from autoscope.config import compose

TINY_ARCH = compose("demo", ["model=tiny_cnn"]).model  # conf/model/tiny_cnn.yaml


_TEMPLATE: list[Path] = []


def _fresh_mlflow_db(cfg: Any) -> None:
    """Copy an empty, migrated MLflow SQLite store into the workspace (migrating costs seconds)."""
    db = Path(cfg.paths.state) / "mlflow.db"
    if db.exists() or cfg.paths.mlflow_uri != f"sqlite:///{db}":
        return
    if not _TEMPLATE:
        import mlflow

        tmp = Path(tempfile.mkdtemp(prefix="autoscope-mlflow-template-"))
        atexit.register(shutil.rmtree, tmp, True)
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}").search_experiments()
        _TEMPLATE.append(tmp / "mlflow.db")
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_TEMPLATE[0], db)


def compose_cfg(workspace: Path, *overrides: str) -> Any:
    """The demo recipe composed into a temp workspace (all stores inside it, MLflow's migrated)."""
    from autoscope.config import compose

    cfg = compose("demo", [f"paths.workspace={workspace}", *overrides], stage="archive")
    _fresh_mlflow_db(cfg)
    return cfg


def _png(path: Path, rgb: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (32, 24), rgb).save(path)
    return path


def fake_run(
    cfg: Any, val_acc: float = 0.9, seed: int = 0, patch_px: int = 32, arch: Any = None
) -> str:
    """Create one finished run with weights, spec, metrics and review pictures; return its id."""
    import mlflow
    import torch

    from autoscope.models.classifier import PatchClassifier, make_spec

    _fresh_mlflow_db(cfg)
    torch.manual_seed(seed)
    classes = [dict(c) for c in cfg.project.classes]
    arch = TINY_ARCH if arch is None else arch  # a `conf/model/*.yaml` block (default tiny_cnn)
    model = PatchClassifier.build(arch, len(classes)).eval()
    spec = make_spec(arch, classes, mpp=float(cfg.project.target_mpp), patch_px=patch_px)
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    exp = client.get_experiment_by_name(cfg.project.name)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(
            cfg.project.name,
            artifact_location=str(Path(cfg.paths.mlflow_artifacts) / cfg.project.name),
        )
    )
    tags = {
        "dataset_version": "0123456789abcdef.dir",
        "dataset_name": "tiny",
        "code_version": "deadbeef",
        "project": cfg.project.name,
    }
    run = client.create_run(exp_id, tags=tags)
    rid = run.info.run_id
    client.log_metric(rid, "val/acc", val_acc)
    client.log_metric(rid, "val/loss", 1.0 - val_acc)
    out = Path(cfg.paths.outputs) / "train" / "runs" / rid
    out.mkdir(parents=True)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    client.log_artifact(rid, str(_png(out / "confusion_matrix.png", (200, 30, 30))), "review")
    client.log_artifact(
        rid, str(_png(out.parent / f"{rid}_samples_grid.png", (30, 30, 200))), "review"
    )
    client.set_terminated(rid)
    return rid
