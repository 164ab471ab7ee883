"""Fetch what a training run produced: weights, spec and review pictures (local or MLflow)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from autoscope.errors import UserError

REVIEW_KINDS = {"confusion": "confusion_matrix", "grid": "sample_grid", "sample": "sample_grid"}


def artifact_files(client: Any, run_id: str, path: str | None = None, depth: int = 3) -> list[str]:
    """Artefact file paths of a run, a few folders deep (sweep parents have none)."""
    files: list[str] = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            if depth > 0:
                files += artifact_files(client, run_id, info.path, depth - 1)
        else:
            files.append(info.path)
    return files


def fetch_run_files(
    client: Any, tracking_uri: str, run_id: str, local_dir: Path, dst: Path
) -> dict[str, Path]:
    """Copy `model.pt`, `spec.json` and PNG review pictures of a run into `dst`.

    The run folder `outputs/<project>/train/runs/<run_id>/` is used when present, else the run's
    MLflow artefacts.

    Returns:
        `{"model.pt": path, "spec.json": path, "<png name>": path, ...}` inside `dst`.

    Raises:
        UserError: the run has no `model.pt` or `spec.json` anywhere.
    """
    import mlflow.artifacts

    dst.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    if local_dir.is_dir():
        for p in sorted(local_dir.rglob("*")):
            if p.is_file() and (p.name in ("model.pt", "spec.json") or p.suffix == ".png"):
                found.setdefault(p.name, p)
    wanted = [
        a
        for a in artifact_files(client, run_id)
        if Path(a).name not in found
        and (Path(a).name in ("model.pt", "spec.json") or a.endswith(".png"))
    ]
    for art in wanted:
        got = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=art, dst_path=str(dst / "_dl"), tracking_uri=tracking_uri
        )
        found.setdefault(Path(art).name, Path(got))
    for need in ("model.pt", "spec.json"):
        if need not in found:
            raise UserError(
                f"run {run_id} has no {need} (looked in {local_dir} and its MLflow artefacts)"
            )
    out: dict[str, Path] = {}
    for name, src in found.items():
        shutil.copy2(src, dst / name)
        out[name] = dst / name
    shutil.rmtree(dst / "_dl", ignore_errors=True)
    return out


def review_name(png_name: str) -> str:
    """Card key of a review picture: `confusion_matrix`, `sample_grid` or the file stem."""
    stem = Path(png_name).stem.lower()
    for word, kind in REVIEW_KINDS.items():
        if word in stem:
            return kind
    return stem
