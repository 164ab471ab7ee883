"""The model card (`metadata.json`): what a model is, what it expects, where it came from."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CARD = "metadata.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, then rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def build_card(
    *,
    name: str,
    version: int,
    spec: dict[str, Any],
    run: Any,
    project: dict[str, Any],
    bentoml_tag: str,
    registry: dict[str, Any],
    review: dict[str, str],
) -> dict[str, Any]:
    """Assemble a model card from the run's `spec.json` and its MLflow record.

    Args:
        name: model name (`<project>-<model_name>` is the registry name).
        version: archive version N (folder `v<N>`, MLflow model version).
        spec: the run's `spec.json` (`arch`, `classes`, `input`, `num_classes`).
        run: the MLflow run.
        project: `cfg.project` as a dict (product, organ, task shown on the card).
        bentoml_tag: the tag in the BentoML model store.
        registry: `{"name": ..., "version": ..., "alias": ...}` of the MLflow registry entry.
        review: card key -> picture path relative to the card.
    """
    tags = run.data.tags
    return {
        "name": name,
        "version": version,
        "project": project.get("name"),
        "product": project.get("product"),
        "organ": project.get("organ"),
        "task": project.get("task"),
        "classes": spec["classes"],
        "num_classes": spec.get("num_classes", len(spec["classes"])),
        "input": spec["input"],
        "arch": spec["arch"],
        "metrics": dict(sorted(run.data.metrics.items())),
        "dataset_version": tags.get("dataset_version"),
        "dataset_name": tags.get("dataset_name"),
        "run_id": run.info.run_id,
        "code_version": tags.get("code_version"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "weights": "model.pt",
        "spec": "spec.json",
        "bentoml_tag": bentoml_tag,
        "mlflow_registry": registry,
        "review": review,
    }


def read_card(path: Path) -> dict[str, Any]:
    """Read a `metadata.json` card (a file or a folder holding one)."""
    p = path / CARD if path.is_dir() else path
    return json.loads(p.read_text())


def archived_cards(models_dir: Path) -> list[dict[str, Any]]:
    """Cards of every archived model version under `outputs/<project>/models/`, sorted."""
    cards = []
    for p in sorted(models_dir.glob(f"*/v*/{CARD}")):
        card = read_card(p)
        card["_dir"] = str(p.parent)
        cards.append(card)
    return sorted(cards, key=lambda c: (c["name"], int(c["version"])))
