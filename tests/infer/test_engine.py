"""The engine on real slide files: outputs open, areas add up, predictions equal a naive loop."""

from __future__ import annotations

import json

import numpy as np
import openslide
import pandas as pd
import pytest
import shapely
from infer_helpers import CLASSES, infer_spec, tiny_classifier
from shapely.geometry import shape

from autoscope.infer.engine import SlideError, infer_slide, predict_slide


@pytest.fixture(scope="module")
def slide_out(synth_slide, tmp_path_factory):
    out = tmp_path_factory.mktemp("infer")
    summary = infer_slide(
        tiny_classifier(), synth_slide.path, out, infer_spec(2.0, 32, batch_size=32, workers=2)
    )
    return out / "synth_000", summary


def test_outputs_exist_and_open(slide_out):
    folder, summary = slide_out
    names = {
        "tiles.parquet",
        "heatmap.png",
        "heatmap.tif",
        "regions.geojson",
        "overview.png",
        "summary.json",
    }
    assert names <= {p.name for p in folder.iterdir()}
    assert not list(folder.parent.glob(".*tmp*")), "no temporary folder left behind"
    text = (folder / "summary.json").read_text()  # no root given: names only, no host path
    assert summary["slide"]["path"] == "synth_000.tif" and summary["out_dir"] == "synth_000"
    assert str(folder.parent) not in text and "/" not in json.loads(text)["slide"]["path"]
    tif = openslide.OpenSlide(str(folder / "heatmap.tif"))
    assert tif.level_count >= 2
    assert float(tif.properties["openslide.mpp-x"]) == pytest.approx(
        summary["overlay"]["mpp"], 1e-3
    )
    w0, h0 = tif.level_dimensions[0]
    ratio = summary["overlay"]["mpp"] / summary["slide"]["mpp"]
    assert w0 * ratio == pytest.approx(summary["slide"]["width_px"], abs=ratio)
    assert h0 * ratio == pytest.approx(summary["slide"]["height_px"], abs=ratio)
    # a predicted tile is opaque where the class probability is high
    tiles = pd.read_parquet(folder / "tiles.parquet")
    x, y = tiles.iloc[len(tiles) // 2][["x", "y"]]
    at = (int((x + 64) / ratio), int((y + 64) / ratio))  # the tile's centre in overlay pixels
    px = np.asarray(tif.read_region(at, 0, (1, 1)))[0, 0]
    assert px[3] >= 127  # alpha = top probability (>= 0.5 with two classes)


def test_tiles_summary_and_areas_agree(slide_out):
    folder, summary = slide_out
    tiles = pd.read_parquet(folder / "tiles.parquet")
    on_disk = json.loads((folder / "summary.json").read_text())
    assert on_disk["tiles"] == summary["tiles"]
    n = summary["tiles"]["total"]
    assert n == len(tiles) > 100
    assert sum(summary["tiles"]["per_class"].values()) == n
    assert set(tiles["class"]) <= {c["name"] for c in CLASSES}
    assert np.allclose(tiles[["prob_tumor", "prob_stroma"]].sum(1), 1.0, atol=1e-5)
    tile_mm2 = (32 * 2.0 / 1000) ** 2  # 32 px at 2 um/px: 64 um (128 level-0 px) a side
    assert summary["tiles"]["tile_area_mm2"] == pytest.approx(tile_mm2)
    assert sum(summary["areas_mm2"].values()) == pytest.approx(summary["tissue_area_mm2"])
    assert summary["tissue_area_mm2"] == pytest.approx(n * tile_mm2)
    for name, count in summary["tiles"]["per_class"].items():
        assert summary["areas_mm2"][name] == pytest.approx(count * tile_mm2)


def test_geojson_is_valid_qupath(slide_out):
    folder, summary = slide_out
    geo = json.loads((folder / "regions.geojson").read_text())
    assert geo["type"] == "FeatureCollection" and geo["features"]
    total = 0.0
    for f in geo["features"]:
        props = f["properties"]
        assert props["objectType"] == "annotation"
        assert props["classification"]["name"] in summary["tiles"]["per_class"]
        assert len(props["classification"]["color"]) == 3
        assert 0.0 < props["measurements"]["mean_probability"] <= 1.0
        geom = shape(f["geometry"])
        assert geom.is_valid and geom.geom_type in ("Polygon", "MultiPolygon")
        w, h = summary["slide"]["width_px"], summary["slide"]["height_px"]
        assert shapely.box(0, 0, w, h).contains(geom)
        total += geom.area * (summary["slide"]["mpp"] / 1000) ** 2
    assert total == pytest.approx(summary["tissue_area_mm2"], rel=1e-6)


def _naive(model, path, coords, level, patch_px):
    """The baseline: OpenSlide read_region then the model, one tile at a time."""
    import torch

    slide = openslide.OpenSlide(str(path))
    out = []
    with torch.inference_mode():
        for x, y in coords:
            rgb = np.asarray(slide.read_region((int(x), int(y)), level, (patch_px, patch_px)))
            t = torch.from_numpy(np.ascontiguousarray(rgb[None, ..., :3]))
            out.append(torch.softmax(model(t).float(), 1)[0].numpy())
    return np.stack(out)


def test_engine_equals_naive_loop(synth_slide):
    model = tiny_classifier()
    pred = predict_slide(
        model,
        synth_slide.path,
        mpp=1.0,
        patch_px=32,
        batch_size=16,
        workers=2,
        progress=False,
        device="cpu",
    )
    assert len(pred.coords) > 50
    pick = np.linspace(0, len(pred.coords) - 1, 40).astype(int)
    ref = _naive(model, synth_slide.path, pred.coords[pick], level=1, patch_px=32)
    assert np.abs(pred.probs[pick] - ref).max() <= 1e-5


def test_corrupt_slide_raises_slide_error(fixtures_dir, tmp_path):
    with pytest.raises(SlideError, match="broken.svs"):
        infer_slide(tiny_classifier(), fixtures_dir / "broken.svs", tmp_path, infer_spec())
    assert not list(tmp_path.iterdir())


def test_too_coarse_slide_is_refused(synth_slide, tmp_path):
    with pytest.raises(SlideError, match="coarser"):
        predict_slide(tiny_classifier(), synth_slide.path, mpp=0.25, patch_px=32, progress=False)


def test_slide_without_mpp_needs_override(tmp_path):
    from autoscope.slides.synth import make_synthetic_slide

    slide = make_synthetic_slide(
        tmp_path / "nompp.tif", seed=1, width_px=1024, height_px=1024, with_mpp=False
    )
    with pytest.raises(SlideError, match="no MPP"):
        predict_slide(tiny_classifier(), slide.path, mpp=2.0, patch_px=32, progress=False)
    pred = predict_slide(
        tiny_classifier(), slide.path, mpp=2.0, patch_px=32, progress=False, mpp_x=0.5
    )
    assert pred.slide_mpp == 0.5 and len(pred.coords) > 0


def test_slide_without_tissue_gives_empty_outputs(synth_slide, tmp_path):
    glass_only = {"min_saturation": 1.01, "edge_saturation": 1.01}  # nothing is stained
    summary = infer_slide(
        tiny_classifier(), synth_slide.path, tmp_path, infer_spec(tissue=glass_only)
    )
    assert summary["tiles"]["total"] == 0 and summary["tissue_area_mm2"] == 0
    geo = json.loads((tmp_path / "synth_000" / "regions.geojson").read_text())
    assert geo["features"] == []
    assert openslide.OpenSlide(str(tmp_path / "synth_000" / "heatmap.tif")).level_count >= 2


def test_cpu_model_is_prepared_for_inference_and_predicts_the_same():
    import torch

    from autoscope.infer.batching import prepare_model

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )

    class U8(torch.nn.Module):  # uint8 NHWC in, like PatchClassifier
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.permute(0, 3, 1, 2).float() / 255)

    torch.manual_seed(0)
    model = U8().eval()
    ready = prepare_model(model, torch.device("cpu"), 16)
    assert isinstance(ready, torch.jit.ScriptModule)
    x = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.allclose(ready(x), model(x), atol=1e-5)
    assert prepare_model(model, torch.device("cpu")) is model
