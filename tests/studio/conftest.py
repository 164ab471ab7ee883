"""A tiny Studio workspace: one synthetic slide ingested by the real CLI, cells beside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from autoscope.cli import main
from autoscope.slides.synth import make_synthetic_slide
from autoscope.studio.overlays import synthetic_cells

FAKE_JOB = [sys.executable, "-c", "import sys; print('fake job', sys.argv[3:])"]


@pytest.fixture(scope="session")
def studio_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one registered synthetic slide and an inference folder with cells."""
    ws = tmp_path_factory.mktemp("studio_ws")
    src = ws / "raw"
    src.mkdir()
    make_synthetic_slide(src / "s0.tif", seed=0, width_px=2048, height_px=1536)
    (ws / "meta.csv").write_text("path,scanner\n")
    args = [f"paths.workspace={ws}", f"slides.sources=[{src}]", f"slides.metadata={ws}/meta.csv"]
    assert main(["slides", "ingest", "demo", *args]) == 0
    out = ws / "outputs" / "demo" / "infer" / "cells_model" / "v1" / "s0"
    out.mkdir(parents=True)
    (out / "cells.geojson").write_text(json.dumps(synthetic_cells(500, 2048, 1536)))
    (out / "summary.json").write_text(json.dumps({"slide": {"name": "s0"}}))
    return ws


@pytest.fixture()
def ctx(studio_ws: Path):
    """A StudioContext over the workspace with a fake job command."""
    from autoscope.config import compose
    from autoscope.stages.studio import context

    cfg = compose("demo", [f"paths.workspace={studio_ws}", f"slides.metadata={studio_ws}/meta.csv"])
    c = context(cfg, "demo")
    c.command = FAKE_JOB
    return c


@pytest.fixture()
def client(ctx):
    """A TestClient on the Studio app (its CSRF cookie set by a first page)."""
    from fastapi.testclient import TestClient

    from autoscope.studio.app import create_app

    with TestClient(create_app(ctx)) as c:
        assert c.get("/").status_code == 200
        yield c
