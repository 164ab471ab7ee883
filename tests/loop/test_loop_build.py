"""Corrections through `dataset build` (what dvc.yaml's dataset stage runs): the edited QuPath
files of corrections/<dataset>/round_<N>/ are applied in round order to the rebuilt patches."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autoscope.errors import UserError
from autoscope.loop.lineage import card_lineage
from autoscope.stages.dataset import build
from autoscope.stages.loop import refine


def _edit(
    doc: dict, built: pd.DataFrame, relabel: int, delete: int
) -> tuple[dict, list[str], list[str]]:
    """Give the first `relabel` queued patches the other class than `built` has, drop the next
    `delete` ones, confirm the rest (the annotator's edit of a review queue)."""
    feats, flipped, dropped = [], [], []
    for i, f in enumerate(doc["features"]):
        pid = f["properties"]["metadata"]["patch_id"]
        if i < relabel:
            other = "stroma" if built.loc[pid, "label"] == "tumor" else "tumor"
            f["properties"]["classification"]["name"] = other
            flipped.append(pid)
        elif i < relabel + delete:
            dropped.append(pid)
            continue
        else:  # confirmed: the label the (clean) build gives
            f["properties"]["classification"]["name"] = built.loc[pid, "label"]
        feats.append(f)
    return {**doc, "features": feats, "author": "dr_okafor"}, flipped, dropped


def test_dataset_build_applies_correction_rounds(loop_ws) -> None:
    ds = loop_ws.root / "data/demo/datasets/demo_tissue"
    before = pd.read_parquet(ds / "manifest.parquet").set_index("patch_id")
    loop_ws.flip(8)  # so the review queue has suspects (the rebuild below starts clean again)
    out = Path(refine(loop_ws.cfg())["dir"])
    queue = max(out.glob("*.geojson"), key=lambda p: len(json.loads(p.read_text())["features"]))
    doc, flipped, dropped = _edit(json.loads(queue.read_text()), before, relabel=3, delete=2)
    folder = loop_ws.root / "corrections" / "demo_tissue"
    (folder / "round_1").mkdir(parents=True)
    (folder / "README.md").write_text("not a correction")
    (folder / "round_1" / queue.name).write_text(json.dumps(doc))

    result = build(loop_ws.cfg(f"dataset.corrections={folder}", stage="dataset_build"))
    after = pd.read_parquet(ds / "manifest.parquet").set_index("patch_id")
    assert result["patches"] == len(before) - 2
    assert not set(dropped) & set(after.index)  # deleted in QuPath: gone
    for pid in flipped:  # relabelled: same id, the other class
        assert after.loc[pid, "label"] != before.loc[pid, "label"]
    same = after.index.difference(flipped)
    assert (after.loc[same, "label"] == before.loc[same, "label"]).all()  # ids stable, rest kept
    lineage = json.loads((ds / "lineage.json").read_text())
    assert lineage["round"] == 1 and lineage["files"] == [f"round_1/{queue.name}"]
    assert lineage["queues"] == ["review round 1"]
    assert lineage["by_kind"] == {"relabel": 3, "delete": 2}
    assert lineage["by_author"] == {"dr_okafor": 5}
    assert {c["patch_id"] for c in lineage["corrections"]} == set(flipped) | set(dropped)
    card = card_lineage(loop_ws.root / "data/demo", "demo_tissue")["lineage"]
    assert card["round"] == 1 and set(flipped) <= set(card["corrected_patches"])
    again = refine(loop_ws.cfg())  # the next queue is the next round
    assert again["round"] == 2 and Path(again["dir"]).name == "round_2"

    # round 2 names a patch round 1 deleted: one line, and the last version stays as it was
    (folder / "round_2").mkdir()
    stale = {**json.loads(queue.read_text()), "author": "dr_okafor"}
    (folder / "round_2" / queue.name).write_text(json.dumps(stale))
    with pytest.raises(UserError, match=f"patch {dropped[0]} no longer exists"):
        build(loop_ws.cfg(f"dataset.corrections={folder}", stage="dataset_build"))
    assert json.loads((ds / "lineage.json").read_text())["round"] == 1


def test_a_dense_dataset_refuses_patch_corrections(loop_ws, tmp_path) -> None:
    folder = tmp_path / "corr"
    folder.mkdir()
    (folder / "slide_000.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    cfg = loop_ws.cfg(
        f"dataset.corrections={folder}", "project.task=tissue_segmentation", stage="dataset_build"
    )
    with pytest.raises(UserError, match="takes no patch-label corrections"):
        build(cfg)
