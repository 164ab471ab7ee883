"""Loop test fixtures: a workspace with ingested synthetic slides and a built demo dataset."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscope.config import compose
from autoscope.slides.synth import make_synthetic_slide

SLIDES = 3  # synthetic slides: train / val / test by slide
CLASSES = ["tumor", "stroma"]  # the demo project's classes (label index = position)


@dataclass
class LoopWorkspace:
    """A workspace folder whose demo_tissue dataset is built."""

    root: Path
    raw: Path

    def cfg(self, *overrides: str, stage: str = "refine"):
        """The demo recipe composed in this workspace with extra overrides."""
        base = [
            f"paths.workspace={self.root}",
            f"slides.sources=[{self.raw}]",
            "slides.metadata=null",
            "dataset=demo_tissue",
            "dataset.max_patches_per_slide=120",
            "dataset.split.fractions={train: 0.34, val: 0.33, test: 0.33}",
        ]
        return compose("demo", base + list(overrides), stage=stage)

    def flip(self, n: int = 6) -> list[str]:
        """Corrupt n non-test labels of the built dataset in place (what a test plants)."""
        import pandas as pd

        path = self.root / "data/demo/datasets/demo_tissue/manifest.parquet"
        m = pd.read_parquet(path)
        rows = m.index[m["split"] != "test"][:: max(1, (m["split"] != "test").sum() // n)][:n]
        m.loc[rows, "label_idx"] = 1 - m.loc[rows, "label_idx"]
        m.loc[rows, "label"] = [CLASSES[i] for i in m.loc[rows, "label_idx"]]
        m.to_parquet(path, index=False)
        return list(m.loc[rows, "patch_id"])


@pytest.fixture(scope="session")
def loop_base(tmp_path_factory: pytest.TempPathFactory) -> LoopWorkspace:
    """Slides, registry and dataset, made once per session (copy it to modify it)."""
    from autoscope.stages.dataset import build
    from autoscope.stages.slides import ingest

    root = tmp_path_factory.mktemp("loopws")
    raw = root / "data" / "demo" / "raw" / "synthetic"
    for i in range(SLIDES):
        make_synthetic_slide(raw / f"slide_{i:03d}.tif", seed=i, width_px=2048, height_px=1536)
    ws = LoopWorkspace(root, raw)
    ingest(ws.cfg(stage="slides_ingest"))
    build(ws.cfg(stage="dataset_build"))
    return ws


@pytest.fixture
def loop_ws(loop_base: LoopWorkspace, tmp_path: Path) -> LoopWorkspace:
    """A private copy of the session workspace."""
    root = tmp_path / "ws"
    shutil.copytree(loop_base.root, root)
    return LoopWorkspace(root, loop_base.raw)
