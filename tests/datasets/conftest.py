"""Dataset test fixtures: a real workspace with synthetic slides ingested into a registry."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscope.config import compose
from autoscope.slides.synth import make_synthetic_slide

SLIDES = 4  # synthetic slides in the test workspace (enough for 3 splits by slide)
PATIENTS = {"slide_000": "P1", "slide_001": "P1", "slide_002": "P2", "slide_003": "P3"}
DIAGNOSIS = {
    "slide_000": "tumor",
    "slide_001": "stroma",
    "slide_002": "tumor",
    "slide_003": "stroma",
}


@dataclass
class Workspace:
    """A workspace folder with ingested slides and a way to compose the demo recipe in it."""

    root: Path
    raw: Path

    def cfg(self, *overrides: str, dataset: str = "demo_tissue"):
        """Compose the demo recipe with this workspace, the dataset and extra overrides."""
        base = [
            f"paths.workspace={self.root}",
            f"slides.sources=[{self.raw}]",
            f"slides.metadata={self.raw.parent / 'metadata.csv'}",
            f"dataset={dataset}",
        ]
        return compose("demo", base + list(overrides), stage="dataset_build")


def _make_workspace(root: Path) -> Workspace:
    from autoscope.stages.slides import ingest

    raw = root / "data" / "demo" / "raw" / "synthetic"
    for i in range(SLIDES):
        make_synthetic_slide(raw / f"slide_{i:03d}.tif", seed=i, width_px=2048, height_px=1536)
    lines = ["slide,patient,diagnosis"] + [
        f"{s},{PATIENTS[s]},{DIAGNOSIS[s]}" for s in sorted(PATIENTS)
    ]
    (raw.parent / "metadata.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace(root, raw)
    ingest(ws.cfg())
    return ws


@pytest.fixture(scope="session")
def base_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Slides + registry, made once per session; copy it (fixture `workspace`) to modify it."""
    return _make_workspace(tmp_path_factory.mktemp("ws"))


@pytest.fixture
def workspace(base_workspace: Workspace, tmp_path: Path) -> Workspace:
    """A private copy of the session workspace (the registry keeps pointing at the same slides)."""
    root = tmp_path / "ws"
    shutil.copytree(base_workspace.root, root)
    return Workspace(root, base_workspace.raw)
