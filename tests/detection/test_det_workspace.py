"""The cell detection demo through a real workspace pipeline at toy size: `autoscope init`,
`autoscope pipeline add`, `dvc repro` (ingest -> dataset -> train -> archive -> package -> infer).

The toy recipe is the built-in `demo_cells` with smaller numbers (3 small synthetic cell slides,
the tiny heatmap U-Net, half a minute of training); project, dataset sources, metric, thresholds
and engine settings are the built-in recipe's.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
sys.path.insert(0, str(Path(__file__).parents[1]))
from serving import serving_workspace  # noqa: E402
from toy_workspace import pipeline_workspace, sh  # noqa: E402

from autoscope.config import BUILTIN_RECIPES
from autoscope.slides.synth_cells import make_cell_slide

SLIDES = ("cells_000", "cells_001", "cells_002")


def toy_recipe() -> str:
    """The built-in demo_cells recipe at toy size."""
    data = yaml.safe_load((BUILTIN_RECIPES / "demo_cells.yaml").read_text())
    data["defaults"] = [
        "override model: det_tiny" if str(d).startswith("override model") else d
        for d in data["defaults"]
    ]
    fractions = {"train": 0.34, "val": 0.33, "test": 0.33}  # one slide each
    data["dataset"] = {"max_patches_per_slide": 48, "split": {"fractions": fractions}}
    data["trainer"].update(max_epochs=25, max_minutes=0.5, batch_size=8, sample_grid=4)
    data["infer"]["detect"].update(tile_px=128, threshold=0.2, gzip_min_cells=1)  # .gz too
    data["archive"]["thresholds"]["min"]["val/f1"] = 0.0  # a toy fit need not clear the bar
    data["archive"]["model_name"] = "cells_toy"
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def write_raw(root: Path) -> None:
        raw = root / "data" / "demo" / "raw" / "cells"
        for i, name in enumerate(SLIDES):
            make_cell_slide(raw / f"{name}.tif", seed=i, width_px=1024, height_px=768)

    return pipeline_workspace(
        tmp_path_factory.mktemp("detws"), "cells_toy", toy_recipe(), write_raw
    )


def test_the_cell_detection_demo_runs_through_dvc_repro(ws: Path) -> None:
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    for stage in ("ingest@demo_cells", "dataset@demo_cells-demo_cells", "train@cells_toy",
                  "archive@cells_toy", "package@cells_toy", "infer@cells_toy"):  # fmt: skip
        assert stage in lock, stage
    ds = ws / "data" / "demo_cells" / "datasets" / "demo_cells"
    stats = json.loads((ds / "stats.json").read_text())["targets"]
    assert stats["kind"] == "detection" and min(stats["cells_per_class"].values()) > 0
    assert (ds / "cells.parquet").is_file() and (ds / "report" / "cells_montage.png").is_file()
    metrics = json.dumps(json.loads(sh("dvc", "metrics", "show", "--json", cwd=ws)))
    assert "val/f1" in metrics and "test/f1" in metrics
    card = json.loads((ws / "outputs/demo_cells/models/cells_toy/v1/metadata.json").read_text())
    assert card["task"] == "cell_detection" and card["arch"]["detect"]["match_um"] == 3.0
    results = sorted((ws / "outputs/demo_cells/infer/cells_toy/v1").glob("cells_*/summary.json"))
    assert len(results) == len(SLIDES)
    summary = json.loads(results[0].read_text())
    assert summary["tiles"]["total"] > 0 and summary["areas_mm2"]["tissue"] > 0
    assert set(summary["cells"]["per_mm2"]) == {"tumor", "lymphocyte", "fibroblast"}
    folder = results[0].parent
    for f in ("cells.geojson", "heatmap.png", "overview.png"):
        assert (folder / f).stat().st_size > 0, f
    geo = json.loads((folder / "cells.geojson").read_text())
    assert len(geo["features"]) == summary["cells"]["total"]
    # half a minute of toy training on a loaded machine may find no cell yet: the engine's
    # detections themselves are checked in test_det_units; here the files that go with them
    if geo["features"]:  # gzip_min_cells=1: any cell brings the .gz
        assert json.loads(gzip.decompress((folder / "cells.geojson.gz").read_bytes())) == geo
        props = geo["features"][0]["properties"]
        assert props["objectType"] == "detection" and "probability" in props["measurements"]
        assert props["classification"]["name"] in {"tumor", "lymphocyte", "fibroblast"}


def test_the_served_bento_answers_cells_for_patches_and_refuses_the_mask_api(ws: Path) -> None:
    """`bentoml serve` of the pipeline's bento: /cells finds the cells of real slide patches."""
    import bentoml
    import numpy as np
    import openslide

    card = json.loads((ws / "outputs/demo_cells/models/cells_toy/v1/metadata.json").read_text())
    px = int(card["input"]["patch_px"])
    with openslide.OpenSlide(str(ws / "data/demo/raw/cells" / f"{SLIDES[0]}.tif")) as s:
        tiles = [
            np.asarray(s.read_region((x, 200), 0, (px, px)).convert("RGB")) for x in (200, 400)
        ]
    batch = np.stack(tiles)
    with serving_workspace(ws) as url, bentoml.SyncHTTPClient(url, timeout=60) as client:
        got = client.cells(patches=batch)
        with pytest.raises(bentoml.exceptions.BentoMLException, match="use /cells"):
            client.mask(patches=batch)
    assert len(got) == 2 and all("cells" in g for g in got)
    from autoscope.infer.detect import predict_patches
    from autoscope.infer.models import load_engine

    (service,) = (ws / "outputs/demo_cells/package").glob("*/service.json")
    settings = {**json.loads(service.read_text())["infer"], "progress": False}
    model, spec = load_engine(str(ws / "outputs/demo_cells/models/cells_toy/v1"), settings)
    want = predict_patches(model.eval(), batch, spec)  # what the engine says locally
    for g, w in zip(got, want, strict=True):  # the same cells (another process's float sums)
        assert [c["class"] for c in g["cells"]] == [c["class"] for c in w["cells"]]
        for a, b in zip(g["cells"], w["cells"], strict=True):
            assert abs(a["x"] - b["x"]) < 1e-3 and abs(a["y"] - b["y"]) < 1e-3
            assert abs(a["probability"] - b["probability"]) < 1e-4
    for c in (c for g in got for c in g["cells"]):
        assert c["class"] in {"tumor", "lymphocyte", "fibroblast"} and 0 < c["probability"] <= 1
