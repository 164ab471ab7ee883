"""The loop's lineage as a model card carries it: dataset round, parent and corrections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoscope.datasets.diff import LINEAGE


def card_lineage(data_dir: Path | str, dataset_name: str | None) -> dict[str, Any]:
    """`{"lineage": {...}}` for a model card when its dataset is a corrected version, else {}.

    Args:
        data_dir: the project's data folder (`Stores.data`).
        dataset_name: the dataset the run trained on (its `dataset_name` tag).
    """
    if not dataset_name:
        return {}
    path = Path(data_dir) / "datasets" / str(dataset_name) / LINEAGE
    if not path.is_file():
        return {}
    lin = json.loads(path.read_text())
    keep = ("parent", "parent_version", "round", "files", "queues", "by_kind", "by_author")
    ids = [c["patch_id"] for c in lin.get("corrections", [])]
    return {
        "lineage": {
            **{k: lin.get(k) for k in keep},
            "dataset": dataset_name,
            "corrected_patches": ids,
        }
    }
