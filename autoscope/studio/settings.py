"""The Studio's typed settings (`conf/studio/`) and what one app instance serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscope.project import ProjectSpec, Stores


@dataclass(frozen=True)
class StudioSpec:
    """`cfg.studio`: where the app listens, how many jobs run at once, tile and cache sizes."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_jobs: int = 1
    tile_px: int = 256
    jpeg_quality: int = 85
    tile_cache_mb: int = 256
    readers: int = 8
    vector_max_features: int = 3000
    log_tail_lines: int = 200


@dataclass
class StudioContext:
    """Everything one Studio app reads: the recipe, its project and stores, the composed config.

    Args:
        recipe: the recipe name (or path) every launched job runs (`autoscope <stage> <recipe>`).
        project: the typed project of the recipe.
        stores: where the recipe's state lives (registry, datasets, MLflow, Optuna, BentoML).
        spec: the Studio settings.
        config: the recipe composed as plain data (thresholds, group choices, infer settings).
        compose: composes the recipe with overrides into plain data; raises UserError on a bad
            value (the launch forms validate through it before a job starts).
        command: argv prefix that runs the CLI (default: this Python, `-m autoscope.studio.child`).
    """

    recipe: str
    project: ProjectSpec
    stores: Stores
    spec: StudioSpec
    config: dict[str, Any]
    compose: Callable[[list[str]], dict[str, Any]]
    command: list[str] = field(default_factory=list)

    @property
    def jobs_dir(self) -> Path:
        """`outputs/<project>/studio/jobs`: the job records and logs."""
        return self.stores.outputs / "studio" / "jobs"

    @property
    def models_dir(self) -> Path:
        """`outputs/<project>/models`: archived model versions with their cards."""
        return self.stores.outputs / "models"

    @property
    def infer_dir(self) -> Path:
        """Where inference results land (`infer.out_root`)."""
        root = (self.config.get("infer") or {}).get("out_root")
        return Path(root) if root else self.stores.outputs / "infer"
