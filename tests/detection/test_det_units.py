"""Cell detection units: the synthetic slide and its readers, peaks / NMS / matching, tile
ownership, joint image + heatmap views, the engine against one whole-slide tile, bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.det_sources import read_cells
from autoscope.datasets.spec import SourceSpec
from autoscope.errors import UserError
from autoscope.models.det_points import count_matches, find_peaks, match, nms_distance, scores
from autoscope.slides.synth_cells import CELL_CLASSES, make_cell_slide

NAMES = [n for n, _, _ in CELL_CLASSES.values()]


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory):
    return make_cell_slide(tmp_path_factory.mktemp("cells") / "cells_000.tif", seed=3,
                           width_px=768, height_px=576)  # fmt: skip


def registry(s, status: str = "ok", mpp: float | None = 0.5) -> pd.DataFrame:
    row = {"slide_id": "abc123", "name": s.path.stem, "path": str(s.path), "status": status,
           "error": None, "width_px": s.width_px, "height_px": s.height_px, "mpp_x": mpp,
           "mpp_y": mpp, "mpp_source": "file" if mpp else "missing"}  # fmt: skip
    return pd.DataFrame([row])


@pytest.mark.parametrize("kind", ["xml", "points", "csv", "instances"])
def test_every_ground_truth_file_gives_the_drawn_cells(slide, kind: str) -> None:
    path = {"xml": slide.xml_path, "points": slide.points_path, "csv": slide.csv_path,
            "instances": slide.instances_path}[kind]  # fmt: skip
    kinds = {"xml": "xml", "instances": "instances"}
    src = SourceSpec(type=kinds.get(kind, "points"), path=str(path))
    got = read_cells(src, registry(slide), ClassMapper(NAMES), "src")
    truth = slide.cells
    assert len(truth) > 50 and set(truth[:, 2].astype(int)) == {1, 2, 3}
    if kind == "instances":  # a nucleus hidden under a neighbour has no pixel of its own
        assert len(got) >= 0.95 * len(truth)
    else:
        assert len(got) == len(truth)
    pairs = match(got[["x", "y"]].to_numpy(), truth[:, :2], 1.5)
    assert len(pairs) >= 0.95 * len(got)
    assert (got["label_idx"].to_numpy()[pairs[:, 0]] == truth[pairs[:, 1], 2] - 1).mean() > 0.99
    assert (got["outline"].notna().all()) == (kind == "xml")  # polygons keep their outline


def test_peaks_nms_and_hungarian_matching() -> None:
    heat = torch.zeros(1, 2, 32, 32)
    heat[0, 0, 10, 10], heat[0, 1, 10, 11], heat[0, 0, 20, 5] = 0.9, 0.8, 0.6
    heat[0, 0, 2, 2] = 0.2  # below the threshold
    (cells,) = find_peaks(heat, threshold=0.3)
    assert len(cells) == 3
    kept = nms_distance(cells, 2.0)  # one nucleus peaking in two channels: the strongest kept
    assert len(kept) == 2 and kept[0, 3] == pytest.approx(0.9) and kept[0, 2] == 0
    truth = np.array([[10.6, 10.4, 0, 1], [5.5, 20.5, 1, 1], [30.0, 30.0, 0, 0]], np.float32)
    counts = count_matches(kept, truth, 3.0, 2)
    assert counts.tolist() == [[1, 1, 0], [0, 0, 1], [2, 0, 0]]  # class 0, class 1, any class
    s = scores(counts, ["a", "b"], "val/")
    assert s["val/f1/a"] == pytest.approx(2 / 3) and s["val/recall_any"] == 1.0
    border = np.array([[0.5, 0.5, 0, 0.9]], np.float32)  # found a cell whose centre is outside
    assert count_matches(border, np.array([[-1.0, 0.5, 0, 0]]), 3.0, 1).tolist() == [[0, 0, 0]] * 2


def test_every_cell_is_owned_by_exactly_one_tile() -> None:
    from autoscope.infer.detect import TileOwner

    step, tile = 100, 140
    grid = np.array([(x, y) for x in range(0, 500, step) for y in range(0, 300, step)
                     if (x, y) != (200, 100)])  # fmt: skip
    owner = TileOwner(grid, tile, step)
    rng = np.random.default_rng(0)
    cells = np.c_[rng.uniform(0, 540, (4000, 2)), np.zeros((4000, 2))]
    seen = np.zeros(len(cells), int)
    for x, y in grid:
        inside = (
            (cells[:, 0] >= x)
            & (cells[:, 0] < x + tile)
            & (cells[:, 1] >= y)
            & (cells[:, 1] < y + tile)
        )
        kept = owner.keep(int(x), int(y), np.c_[cells[inside], np.flatnonzero(inside)])
        seen[kept[:, 4].astype(int)] += 1
    covered = np.zeros(len(cells), bool)
    for x, y in grid:
        covered |= (
            (cells[:, 0] >= x)
            & (cells[:, 0] < x + tile)
            & (cells[:, 1] >= y)
            & (cells[:, 1] < y + tile)
        )
    assert (seen[covered] >= 1).all() and (
        seen <= 1
    ).mean() > 0.995  # only missing-diagonal corners twice


def test_training_views_turn_image_and_heatmaps_together() -> None:
    from autoscope.models.det_data import _Turned, draw_heatmaps

    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 5, 20] = 255  # one bright pixel at x=20, y=5
    heat = draw_heatmaps([np.array([[20.5, 5.5, 1]])], 32, 2, 1.0)
    assert heat[0, 5, 20, 1] == 255 and heat[0, ..., 0].max() == 0
    data = _Turned(np.concatenate([img, heat], 3), torch.Generator().manual_seed(0), True)
    for _ in range(8):
        x, y = data[[0]]
        yy, xx = np.unravel_index(int(x[0, ..., 0].argmax()), (32, 32))
        assert int(y[0, yy, xx, 1]) == 255


class _DarkSpots(torch.nn.Module):
    """A stand-in detector with a 5 px receptive field: nuclei are dark, one class per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dark = 1.0 - x.permute(0, 3, 1, 2).float().mean(1, keepdim=True) / 255.0
        blur = torch.nn.functional.avg_pool2d(dark, 5, 1, 2)
        return torch.cat([8 * (blur - 0.45), 8 * (blur - 0.5), 8 * (blur - 0.55)], 1)


def _spec(tile_px: int, **detect):
    from autoscope.infer.spec import InferSpec
    from autoscope.project import ClassSpec

    classes = tuple(ClassSpec(n, c) for n, c, _ in CELL_CLASSES.values())
    return InferSpec(mpp=0.5, patch_px=64, classes=classes, task="cell_detection", workers=1,
                     batch_size=4, progress=False, device="cpu",
                     detect={"tile_px": tile_px, "threshold": 0.3, **detect})  # fmt: skip


def test_the_engine_finds_on_tiles_what_one_whole_tile_finds(slide, tmp_path: Path) -> None:
    from autoscope.infer.detect import infer_slide, predict_patches
    from autoscope.infer.writers import is_done

    model = _DarkSpots()
    whole = infer_slide(model, slide.path, tmp_path / "whole", _spec(1024), name="s")
    tiled = infer_slide(
        model, slide.path, tmp_path / "tiled", _spec(128, gzip_min_cells=1), name="s"
    )
    assert tiled["tiles"]["total"] > 4 * whole["tiles"]["total"]
    a = pd.read_parquet(tmp_path / "whole/s/cells.parquet")
    b = pd.read_parquet(tmp_path / "tiled/s/cells.parquet")
    assert len(a) > 100 and len(a) == len(b)  # no cell lost or doubled at the tile borders
    assert np.abs(a[["x", "y"]].to_numpy() - b[["x", "y"]].to_numpy()).max() < 1e-3
    geo = json.loads((tmp_path / "tiled/s/cells.geojson").read_text())
    assert len(geo["features"]) == len(b) == tiled["cells"]["total"]
    assert json.loads(gzip.decompress((tmp_path / "tiled/s/cells.geojson.gz").read_bytes())) == geo
    f = geo["features"][0]
    assert f["properties"]["objectType"] == "detection" and f["geometry"]["type"] == "Polygon"
    assert tiled["areas_mm2"]["tissue"] > 0 and is_done(tmp_path / "tiled/s")
    assert sum(tiled["cells"]["per_class"].values()) == len(b)
    out = predict_patches(model, np.zeros((2, 64, 64, 3), np.uint8), _spec(64))
    assert len(out) == 2 and all(set(p) == {"cells"} for p in out)


def test_bad_input_fails_with_one_line_naming_file_and_feature(slide, tmp_path: Path) -> None:
    mapper, reg = ClassMapper(NAMES), registry(slide)

    def fails(text: str, suffix: str, expect: str, reg=reg) -> None:
        path = tmp_path / f"{slide.path.stem}{suffix}"
        path.write_text(text)
        kind = "xml" if suffix == ".xml" else "points"
        with pytest.raises(UserError, match=expect) as e:
            read_cells(SourceSpec(type=kind, path=str(path)), reg, mapper, "src")
        assert "\n" not in str(e.value) and str(path) in str(e.value)

    fails("x,y,class\n10,10,tumor\n9000,10,tumor\n", ".csv", "outside the slide")
    fails("x,y,class\n10,10,macrophage\n", ".csv", "unknown class 'macrophage'")
    two = '<Annotations MicronsPerPixel="0.5"><Annotation><Regions><Region Text="tumor"><Vertices>'
    fails(two + '<Vertex X="1" Y="1"/><Vertex X="5" Y="5"/></Vertices></Region></Regions>'
          "</Annotation></Annotations>", ".xml", "2 distinct vertices")  # fmt: skip
    bow = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in ((0, 0), (10, 10), (10, 0), (0, 10)))
    fails(two + bow + "</Vertices></Region></Regions></Annotation></Annotations>", ".xml",
          "Self-intersection")  # fmt: skip
    no_mpp = slide.xml_path.read_text().replace(' MicronsPerPixel="0.5"', "")
    fails(no_mpp, ".xml", "no MicronsPerPixel", reg=registry(slide, "no_mpp", None))
    reg2 = registry(slide, "no_mpp", None)  # the XML's MPP fills the slide's
    got = read_cells(SourceSpec(type="xml", path=str(slide.xml_path)), reg2, mapper, "src")
    assert len(got) == len(slide.cells) and reg2.loc[0, "mpp_x"] == 0.5
