"""`autoscope loop run` with a real (tiny) model: corrections -> next dataset -> train ->
archive, the card naming the round; then the archived model drives refine and MC-dropout select."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from autoscope.stages.loop import refine, run_round, select

TRAIN = [  # the demo's small_cnn (dropout 0.1) cut down: one quick epoch on 2 cores
    "model.net.widths=[8,16]",
    "model.net.depths=[1,1]",
    "model.net.stem_width=8",
    "model.input_px=null",
    "trainer.max_epochs=1",
    "trainer.batch_size=32",
    "trainer.sample_grid=8",
    "trainer.threads=1",
    "trainer.max_minutes=null",
    "archive.thresholds.min={val/acc: null}",  # a one-epoch toy fit need not clear the bar
]


def test_loop_run_trains_on_the_corrected_version_and_its_model_drives_the_next_round(
    loop_ws,
) -> None:
    loop_ws.flip(6)
    queue = Path(refine(loop_ws.cfg())["dir"])
    q = pd.read_csv(queue / "queue.csv").set_index("patch_id")
    path = max(queue.glob("*.geojson"), key=lambda p: len(json.loads(p.read_text())["features"]))
    doc = json.loads(path.read_text())
    for f in doc["features"]:  # the annotator accepts every suggestion
        f["properties"]["classification"]["name"] = q.loc[
            f["properties"]["metadata"]["patch_id"], "suggested"
        ]
    edited = loop_ws.root / "edited" / path.name
    edited.parent.mkdir()
    edited.write_text(json.dumps(doc))

    cfg = loop_ws.cfg(
        *TRAIN, f"corrections.files=[{edited}]", "corrections.author=dr_lee", stage="loop"
    )
    out = run_round(cfg)
    assert out["dataset"] == "demo_tissue-r1" and out["round"] == 1 and out["corrections"] > 0
    model = str(cfg.archive.model_name)
    card_dir = loop_ws.root / "outputs/demo/models" / model / "v1"
    card = json.loads((card_dir / "metadata.json").read_text())
    assert (
        card["dataset_name"] == "demo_tissue-r1"
        and card["dataset_version"] == out["dataset_version"]
    )
    assert card["lineage"]["round"] == 1 and card["lineage"]["by_author"] == {
        "dr_lee": out["corrections"]
    }
    assert card["lineage"]["queues"] == ["review round 1"]

    picked = select(
        loop_ws.cfg(
            f"loop.model={model}",
            "dataset.name=demo_tissue-r1",
            "select.mc_dropout=4",
            "select.uncertainty=bald",
            "select.budget=6",
            stage="select",
        )
    )
    assert picked["mode"] == "bald+mc_dropout4+k_centre" and picked["selected"] == 6
    table = pd.read_parquet(Path(picked["dir"]) / "queue.parquet")
    assert set(table["suggested"]) <= {"tumor", "stroma"} and table["score"].between(0, 1).all()
    assert Path(picked["dir"]).name == "round_2"  # the lineage's round + 1

    again = refine(loop_ws.cfg(f"loop.model={model}", "dataset.name=demo_tissue-r1"))
    assert again["features"] == "model" and again["round"] == 2
