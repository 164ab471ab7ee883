"""The loop end to end on a built dataset: refine finds flipped labels, select writes regions,
an edited QuPath file comes back as the next dataset version whose diff names the corrections."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autoscope.datasets.diff import diff_datasets, format_diff
from autoscope.errors import UserError
from autoscope.loop.lineage import card_lineage
from autoscope.stages.loop import correct, refine, select


def _queue_file(out: Path) -> tuple[Path, dict]:
    files = sorted(p for p in out.glob("*.geojson"))
    doc = max((json.loads(p.read_text()) for p in files), key=lambda d: len(d["features"]))
    return out / f"{doc['autoscope']['slide']}.geojson", doc


@pytest.fixture
def refined(loop_ws):
    flipped = loop_ws.flip()
    result = refine(loop_ws.cfg())
    return loop_ws, flipped, result


def test_refine_ranks_the_flipped_labels_first(refined) -> None:
    ws, flipped, result = refined
    out = Path(result["dir"])
    queue = pd.read_csv(out / "queue.csv")
    top = set(queue["patch_id"].head(len(flipped)))
    assert len(top & set(flipped)) >= len(flipped) - 1
    assert (out / "sheet.png").stat().st_size > 1000
    path, doc = _queue_file(out)
    feat = doc["features"][0]
    assert feat["properties"]["objectType"] == "annotation"
    assert (
        "->" in feat["properties"]["name"] and "suspect_score" in feat["properties"]["measurements"]
    )
    assert feat["geometry"]["type"] == "Polygon" and feat["properties"]["metadata"]["patch_id"]


def test_corrections_make_the_next_version_and_diff_names_them(refined) -> None:
    ws, flipped, result = refined
    path, doc = _queue_file(Path(result["dir"]))
    edited = ws.root / "edited" / path.name
    edited.parent.mkdir()
    q = pd.read_csv(Path(result["dir"]) / "queue.csv").set_index("patch_id")
    feats = []
    for f in doc["features"]:
        pid = f["properties"]["metadata"]["patch_id"]
        f["properties"]["classification"]["name"] = q.loc[pid, "suggested"]  # accept
        feats.append(f)
    removed = feats.pop()["properties"]["metadata"]["patch_id"]  # the annotator deletes one
    x0, y0 = 1000, 1000
    feats.append(
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[x0, y0], [x0 + 300, y0], [x0 + 300, y0 + 300], [x0, y0 + 300], [x0, y0]]
                ],
            },
            "properties": {"objectType": "annotation", "classification": {"name": "stroma"}},
        }
    )
    edited.write_text(json.dumps({**doc, "features": feats}))
    cfg = ws.cfg(f"corrections.files=[{edited}]", "corrections.author=dr_lee", stage="loop")
    out = correct(cfg)
    parent = ws.root / "data/demo/datasets/demo_tissue"
    new = Path(out["dir"])
    assert new.name == "demo_tissue-r1" and (parent / "manifest.parquet").is_file()
    assert correct(cfg)["dir"] == out["dir"]  # the same import again reuses the version
    lineage = json.loads((new / "lineage.json").read_text())
    assert lineage["parent"] == "demo_tissue" and lineage["round"] == 1
    assert lineage["by_author"] == {"dr_lee": out["corrections"]}
    kinds = lineage["by_kind"]
    assert kinds["relabel"] == len(feats) - 1 and kinds["delete"] == 1 and kinds["add"] >= 1
    d = diff_datasets(parent, new)
    assert d["relabelled"] == kinds["relabel"] and d["removed"] == 1
    assert d["added"] == kinds["add"]
    assert "dr_lee" in format_diff(d) and d["corrections"]["by_author"] == {
        "dr_lee": out["corrections"]
    }
    m = pd.read_parquet(new / "manifest.parquet")
    assert removed not in set(m["patch_id"])
    card = card_lineage(ws.root / "data/demo", new.name)["lineage"]  # what a model card carries
    assert (
        card["round"] == 1
        and card["parent"] == "demo_tissue"
        and removed in card["corrected_patches"]
    )
    # bad input: a file from another slide, an unknown class, a patch that no longer exists
    other = dict(doc, autoscope={**doc["autoscope"], "width": 999, "height": 777})
    bad = ws.root / "edited" / "bad.geojson"
    for broken, needle in (
        (other, "another slide"),
        (
            {
                **doc,
                "features": [
                    dict(
                        doc["features"][0],
                        properties={
                            **doc["features"][0]["properties"],
                            "classification": {"name": "necrosis"},
                        },
                    )
                ],
            },
            "unknown class 'necrosis'",
        ),
    ):
        bad.write_text(json.dumps(broken))
        with pytest.raises(UserError, match=needle):
            correct(ws.cfg(f"corrections.files=[{bad}]", stage="loop"))
    gone = ws.root / "edited" / path.name.replace(".geojson", ".again.geojson")
    again = {
        **doc,
        "features": [
            f for f in doc["features"] if f["properties"]["metadata"]["patch_id"] == removed
        ],
    }
    gone.write_text(json.dumps(again))
    with pytest.raises(UserError, match="no longer exists"):
        correct(ws.cfg(f"corrections.files=[{gone}]", "dataset.name=demo_tissue-r1", stage="loop"))


def _places(df: pd.DataFrame) -> set[tuple]:
    return set(zip(df["slide"], df["x"], df["y"], strict=True))


def test_select_writes_regions_without_classes(loop_ws) -> None:
    out = select(loop_ws.cfg("select.budget=8", "select.per_slide_cap=3", stage="select"))
    assert out["selected"] == 8 and out["mode"] == "cold_start"
    q = pd.read_parquet(Path(out["dir"]) / "queue.parquet")
    assert q.groupby("slide").size().max() <= 3
    m = pd.read_parquet(loop_ws.root / "data/demo/datasets/demo_tissue/manifest.parquet")
    assert not _places(q) & _places(m)
    path, doc = _queue_file(Path(out["dir"]))
    assert "classification" not in doc["features"][0]["properties"]
    assert doc["autoscope"]["width"] == 2048 and doc["autoscope"]["kind"] == "select"
    for bad, needle in (
        (["select.uncertainty=guess"], "use margin, entropy, bald"),
        (["select.uncertainty=bald"], "needs select.mc_dropout"),
    ):
        with pytest.raises(UserError, match=needle):
            select(loop_ws.cfg(*bad, stage="select"))


def test_select_over_an_image_set_writes_a_labels_csv(loop_ws) -> None:
    from PIL import Image

    from autoscope.datasets.store import open_shards

    shards = open_shards(loop_ws.root / "data/demo/datasets/demo_tissue")
    pixels = next(iter(shards.values()))
    tiles = loop_ws.root / "tiles"
    for i in range(12):
        folder = tiles / f"case_{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i * 5]).save(folder / f"tile_{i:02d}.png")
    (tiles / "notes.txt").write_text("not an image")
    out = select(
        loop_ws.cfg(
            f"select.images={tiles}", "select.budget=5", "select.per_slide_cap=2", stage="select"
        )
    )
    assert out["selected"] == 5 and out["candidates"] == 12
    labels = pd.read_csv(Path(out["dir"]) / "labels.csv")
    assert list(labels.columns[:2]) == ["path", "label"] and labels["label"].isna().all()
    assert all(Path(p).is_file() for p in labels["path"])  # what a `type: csv` source reads
    assert pd.Series([Path(p).parent.name for p in labels["path"]]).value_counts().max() <= 2
    assert not list(Path(out["dir"]).glob("*.geojson"))  # no slide: no QuPath file
    with pytest.raises(UserError, match="holds no unlabelled image"):
        select(loop_ws.cfg(f"select.images={tiles}/none", stage="select"))
