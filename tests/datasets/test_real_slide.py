"""A dataset from the real CMU-1-Small-Region SVS (Aperio, 0.499 um/px, one level)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from autoscope.config import compose
from autoscope.datasets.store import load_split, read_manifest
from autoscope.stages.dataset import build as build_dataset

CMU = Path(__file__).parents[1] / "fixtures" / "cmu-1-small-region.svs"


def test_regions_and_points_on_the_real_svs(tmp_path: Path) -> None:
    from autoscope.stages.slides import ingest

    base = [f"paths.workspace={tmp_path}", f"slides.sources=[{CMU}]", "slides.metadata=null"]
    ingest(compose("demo", base, "slides_ingest"))
    ann = tmp_path / "ann"
    ann.mkdir()
    tissue = [[[600, 900], [1600, 900], [1600, 2000], [600, 2000], [600, 900]]]
    feats = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": tissue},
            "properties": {"classification": {"name": "Tumor"}},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [1100, 1400]},
            "properties": {"classification": {"name": "stroma"}},
        },
    ]
    (ann / "cmu-1-small-region.svs.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": feats})
    )
    ds = [
        "dataset=demo_tissue",
        "dataset.name=cmu",
        f"dataset.sources=[{{type: geojson, path: {ann}}}]",
        "dataset.split.fractions={train: 1.0, val: 0.0, test: 0.0}",
    ]
    res = build_dataset(compose("demo", base + ds, "dataset_build"))
    m = read_manifest(Path(res["dir"]))
    region = m[m["label_level"] == "tissue"]
    # a 1000x1100 px square at 0.499 um/px, 64 px patches at 1.0 um/px (128.3 level-0 px)
    assert 30 <= len(region) <= 60 and set(region["label"]) == {"tumor"}
    cell = m[m["label_level"] == "cell"]
    assert cell[["point_x", "point_y", "label"]].values.tolist() == [[1100.0, 1400.0, "stroma"]]
    assert (m["pyramid_level"] == 0).all()
    images, _ = load_split(Path(res["dir"]), "train")
    assert images.shape[1:] == (64, 64, 3)
    assert float(np.asarray(images).mean()) < 235  # H&E tissue, not glass
