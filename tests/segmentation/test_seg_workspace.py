"""The segmentation demo through a real workspace pipeline at toy size: `autoscope init`,
`autoscope pipeline add`, `dvc repro` (ingest -> dataset -> train -> archive -> package -> infer).

The toy recipe is the built-in `demo_seg` with smaller numbers (3 small synthetic slides, the
tiny U-Net, 2 epochs); everything else (project, dataset sources, metric, thresholds, engine
settings) is the built-in recipe's.
"""

from __future__ import annotations

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
from autoscope.slides.synth import make_synthetic_slide

SLIDES = ("slide_000", "slide_001", "slide_002")


def toy_recipe() -> str:
    """The built-in demo_seg recipe at toy size."""
    data = yaml.safe_load((BUILTIN_RECIPES / "demo_seg.yaml").read_text())
    data["defaults"] = [
        "override model: seg_tiny" if str(d).startswith("override model") else d
        for d in data["defaults"]
    ]
    data["dataset"] = {"max_patches_per_slide": 40, "split": {"fractions": _fractions()}}
    data["trainer"] = {"max_epochs": 2, "max_minutes": 1.0, "sample_grid": 4, "tta": False}
    data["infer"]["segment"]["tile_px"] = 128
    data["archive"]["thresholds"]["min"]["val/dice"] = 0.0  # 2 epochs need not clear the bar
    data["archive"]["model_name"] = "seg_toy"
    return yaml.safe_dump(data, sort_keys=False)


def _fractions() -> dict[str, float]:
    return {"train": 0.34, "val": 0.33, "test": 0.33}  # one slide each


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def write_raw(root: Path) -> None:
        raw = root / "data" / "demo" / "raw" / "synthetic"
        for i, name in enumerate(SLIDES):
            make_synthetic_slide(raw / f"{name}.tif", seed=i, width_px=1536, height_px=1024)
        (raw.parent / "metadata.csv").write_text(
            "slide,patient\n" + "".join(f"{s},P{s}\n" for s in SLIDES)
        )

    return pipeline_workspace(tmp_path_factory.mktemp("segws"), "seg_toy", toy_recipe(), write_raw)


def test_the_segmentation_demo_runs_through_dvc_repro(ws: Path) -> None:
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    for stage in ("ingest@demo_seg", "dataset@demo_seg-demo_seg", "train@seg_toy",
                  "archive@seg_toy", "package@seg_toy", "infer@seg_toy"):  # fmt: skip
        assert stage in lock, stage
    ds = ws / "data" / "demo_seg" / "datasets" / "demo_seg"
    stats = json.loads((ds / "stats.json").read_text())["targets"]
    assert stats["kind"] == "segmentation" and stats["unannotated"] == "background"
    assert min(stats["pixels"].values()) > 0  # background, tumor and stroma all annotated
    assert (ds / "masks").is_dir() and (ds / "report" / "montage_masks.png").is_file()
    metrics = json.dumps(json.loads(sh("dvc", "metrics", "show", "--json", cwd=ws)))
    assert "val/dice" in metrics and "test/dice" in metrics
    card = json.loads((ws / "outputs/demo_seg/models/seg_toy/v1/metadata.json").read_text())
    assert card["task"] == "tissue_segmentation"
    results = sorted((ws / "outputs/demo_seg/infer/seg_toy/v1").glob("slide_*/summary.json"))
    assert len(results) == len(SLIDES)
    summary = json.loads(results[0].read_text())
    assert summary["tiles"]["total"] > 0 and set(summary["areas_mm2"]) == {
        "background", "tumor", "stroma"
    }  # fmt: skip
    folder = results[0].parent
    for f in ("labels.tif", "regions.geojson", "heatmap.png", "overview.png"):
        assert (folder / f).stat().st_size > 0, f
    geo = json.loads((folder / "regions.geojson").read_text())
    assert {f["properties"]["objectType"] for f in geo["features"]} == {"annotation"}
    import openslide

    with openslide.OpenSlide(str(folder / "labels.tif")) as s:
        assert s.level_count >= 2 and float(s.properties["openslide.mpp-x"]) == pytest.approx(1.0)


@pytest.mark.slow
def test_a_segmentation_sweep_runs_with_the_small_space(ws: Path) -> None:
    """`train -m hpo=small`: the Optuna sweeper drives a segmentation study on val/dice."""
    out = sh(
        "autoscope", "train", "seg_toy", "-m", "hpo=small", "hpo.n_trials=2",
        "hpo.study_name=seg-toy-sweep", "hpo.fixed.trainer.max_minutes=0.3",
        "trainer.max_epochs=1", "hpo.mlflow=false", cwd=ws,
    )  # fmt: skip
    assert "val/dice" in out
    study = next((ws / "outputs" / "demo_seg" / "hpo").glob("seg-toy-sweep*/study.json"), None)
    assert study is not None and json.loads(study.read_text())


def test_the_served_bento_answers_masks_for_patches_and_refuses_the_cells_api(ws: Path) -> None:
    """`bentoml serve` of the pipeline's bento: /mask gives a class per pixel of each patch."""
    import bentoml
    import numpy as np

    card = json.loads((ws / "outputs/demo_seg/models/seg_toy/v1/metadata.json").read_text())
    px = int(card["input"]["patch_px"])
    batch = np.random.default_rng(0).integers(0, 256, (2, px, px, 3), dtype=np.uint8)
    with serving_workspace(ws) as url, bentoml.SyncHTTPClient(url, timeout=60) as client:
        got = client.mask(patches=batch)
        with pytest.raises(bentoml.exceptions.BentoMLException, match="use /mask"):
            client.cells(patches=batch)
    assert len(got) == 2
    mask = np.asarray(got[0]["mask"])
    assert mask.shape == (px, px) and mask.min() >= 0 and mask.max() < len(card["classes"])
