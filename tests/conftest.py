"""Shared pytest fixtures: small synthetic slides and the committed real fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscope.slides.synth import SynthSlide, make_synthetic_slide

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The committed fixtures folder (real slides, labelled tiles)."""
    return FIXTURES


@pytest.fixture(scope="session")
def synth_slide(tmp_path_factory: pytest.TempPathFactory) -> SynthSlide:
    """One small synthetic slide (4096x3072 px, 0.5 um/px, 256 px JPEG 4:2:0 tiles, seed 0).

    Session-scoped and read-only: tests must not modify its files.
    """
    out = tmp_path_factory.mktemp("synth")
    return make_synthetic_slide(out / "synth_000.tif", seed=0)
