"""The segmentation engine on synthetic slides: outputs, resumable folders, flat memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from autoscope.infer.segment import infer_slide
from autoscope.infer.spec import InferSpec
from autoscope.models.classifier import PatchClassifier
from autoscope.models.seg_nets import seg_unet
from autoscope.project import ClassSpec
from autoscope.slides.synth import make_synthetic_slide

CLASSES = (ClassSpec("background", "#f0f0f0"), ClassSpec("tumor", "#d62728"),
           ClassSpec("stroma", "#1f77b4"))  # fmt: skip


def _model() -> PatchClassifier:
    torch.manual_seed(0)
    return PatchClassifier(seg_unet(3, widths=[8, 16], depths=[1, 1], stem_width=8)).eval()


def _spec() -> InferSpec:
    seg = {"tile_px": 128, "overlap_px": 16}
    kw = {"batch_size": 8, "workers": 1, "device": "cpu", "progress": False}
    return InferSpec(mpp=1.0, patch_px=64, classes=CLASSES, segment=seg, **kw)


def _peak_bytes(model: PatchClassifier, slide: Path, out: Path) -> tuple[int, dict]:
    tracemalloc.start()
    try:
        summary = infer_slide(model, slide, out, _spec())
        return tracemalloc.get_traced_memory()[1], summary
    finally:
        tracemalloc.stop()


def test_engine_outputs_and_flat_memory_in_slide_height(tmp_path: Path) -> None:
    short = make_synthetic_slide(tmp_path / "short.tif", seed=1, width_px=1024, height_px=1024)
    tall = make_synthetic_slide(tmp_path / "tall.tif", seed=1, width_px=1024, height_px=4096)
    model = _model()
    _peak_bytes(model, short.path, tmp_path / "warm")  # imports and first calls
    a, s_a = _peak_bytes(model, short.path, tmp_path / "out")
    b, s_b = _peak_bytes(model, tall.path, tmp_path / "out")
    print(f"peak traced memory {a / 2**20:.1f} MB vs {b / 2**20:.1f} MB (4x the height)")
    assert s_b["tiles"]["total"] > s_a["tiles"]["total"]
    assert b < 1.5 * a + 4 * 2**20, (a, b)  # the band, not the slide, is held
    folder = tmp_path / "out" / "tall"
    assert sorted(p.name for p in folder.iterdir()) == sorted(s_b["files"].values())
    assert s_b["label_tiff"]["levels"][0] == [512, 2048]  # the map at the model's 1 um/px
    areas = s_b["areas_mm2"]
    assert sum(areas.values()) == pytest.approx(s_b["tissue_area_mm2"])
    assert json.loads((folder / "summary.json").read_text())["tiles"] == s_b["tiles"]
    geo = json.loads((folder / "regions.geojson").read_text())
    assert all(f["properties"]["objectType"] == "annotation" for f in geo["features"])


def test_a_slide_without_tissue_gives_an_empty_complete_result(tmp_path: Path) -> None:
    import tifffile

    glass = np.full((512, 512, 3), 242, np.uint8)
    path = tmp_path / "glass.tif"
    tifffile.imwrite(path, glass, tile=(256, 256), photometric="rgb",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER")  # fmt: skip
    summary = infer_slide(_model(), path, tmp_path / "out", _spec())
    assert summary["tiles"]["total"] == 0 and summary["tissue_area_mm2"] == 0
    assert (tmp_path / "out" / "glass" / "summary.json").is_file()
