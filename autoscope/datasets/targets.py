"""What a dense task adds to a patch dataset: its own plan and target files beside the shards.

Classification datasets need nothing more than the manifest's label; segmentation (masks) and
detection (cells) plug a `Targets` into `autoscope.datasets.build.build_dataset`, which still
assigns patch ids, groups and splits, writes the pixel shards, the manifest, stats and report.
`autoscope.tasks.entry(task, "targets")` names the family's class (one instance per build).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from autoscope.datasets.spec import DatasetSpec
    from autoscope.project import ProjectSpec


class Targets(Protocol):
    """A dense task's part of `dataset build`."""

    def plan(
        self, ds: DatasetSpec, project: ProjectSpec, registry: pd.DataFrame, detector: Any
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Patch rows (the columns `build.make_plan` gives; `label` stratifies the splits) and
        the kept annotation points (may be empty)."""
        ...

    def write(
        self,
        plan: pd.DataFrame,
        tmp: Path,
        ds: DatasetSpec,
        project: ProjectSpec,
        slides: dict[str, tuple[str, float]],
    ) -> dict[str, Any]:
        """After the pixel shards (`plan` has patch_id, split, shard, index): write the targets
        into the dataset folder `tmp`; return their statistics (stats.json `targets`)."""
        ...

    def pictures(
        self, tmp: Path, plan: pd.DataFrame, project: ProjectSpec, ds: DatasetSpec
    ) -> dict[str, str]:
        """Montages with the targets drawn, under `tmp/report/`: {key: path relative to tmp}."""
        ...
