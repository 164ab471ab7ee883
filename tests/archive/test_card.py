"""The typed model card: the historical JSON layout round-trips; a broken card is one error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscope.archive.card import CardError, ModelCard, read_card, write_card
from autoscope.infer.spec import InferSpec

LEGACY = {  # a card as `autoscope archive` wrote it before the typed card (no tissue, no created)
    "name": "demo-tissue_classification",
    "version": 1,
    "project": "demo",
    "product": "autoscope-demo",
    "organ": "breast",
    "task": "tissue_classification",
    "classes": [{"name": "tumor", "color": "#d62728"}, {"name": "stroma", "color": "#1f77b4"}],
    "num_classes": 2,
    "input": {"mpp": 1.0, "patch_px": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    "arch": {"name": "tiny_cnn"},
    "metrics": {"val/acc": 0.9},
    "dataset_version": "0123.dir",
    "dataset_name": "tiny",
    "run_id": "abc",
    "code_version": "deadbeef",
    "date": "2024-01-01T00:00:00+00:00",
    "weights": "model.pt",
    "spec": "spec.json",
    "bentoml_tag": "demo-tissue_classification:v1",
    "mlflow_registry": {"name": "demo-tissue_classification", "version": 1, "alias": "champion"},
    "review": {"confusion_matrix": "review/confusion_matrix.png"},
    "parameters": 1234,
    "review_slide": None,
    "studio_note": "kept",  # a key this version does not know
}


def test_legacy_card_round_trips_with_its_layout(tmp_path: Path) -> None:
    card = ModelCard.from_json(LEGACY)
    assert card.created == LEGACY["date"] and card.tissue == {} and card.input.patch_px == 32
    assert [c.name for c in card.classes] == ["tumor", "stroma"]
    out = card.to_json()
    assert {k: out[k] for k in LEGACY} == LEGACY  # every historical key, same values
    assert out["tissue"] == {} and out["created"] == LEGACY["date"]
    write_card(tmp_path, card)
    assert read_card(tmp_path) == card
    assert not [p for p in tmp_path.iterdir() if p.name != "metadata.json"]


def test_card_drives_the_infer_spec() -> None:
    card = ModelCard.from_json({**LEGACY, "tissue": {"_target_": "x", "min_saturation": 0.2}})
    spec = InferSpec.from_card(card, {"batch_size": 8, "memory": "1GB", "slides": "q"})
    assert (spec.mpp, spec.patch_px, spec.batch_size, spec.memory) == (1.0, 32, 8, 2**30)
    assert spec.tissue == {"min_saturation": 0.2} and spec.detector().min_saturation == 0.2
    assert spec.model_info["run_id"] == "abc" and spec.step_px == 32
    with pytest.raises(Exception, match="infer.batchsize: not an inference setting"):
        InferSpec.from_card(card, {"batchsize": 8})


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"classes": []}, "classes"),
        ({"input": {"patch_px": 32}}, "input.mpp"),
        ({"input": {"mpp": 1.0, "patch_px": "big"}}, "invalid literal"),
        ({"name": None, "classes": "x"}, "classes"),
    ],
)
def test_broken_card_is_one_clear_error(tmp_path: Path, change: dict, why: str) -> None:
    (tmp_path / "metadata.json").write_text(json.dumps({**LEGACY, **change}))
    with pytest.raises(CardError, match=why) as e:
        read_card(tmp_path)
    assert "\n" not in str(e.value) and "metadata.json: not a usable model card" in str(e.value)


def test_missing_or_garbled_card(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="not a usable model card"):
        read_card(tmp_path / "nope")
    (tmp_path / "metadata.json").write_text("{")
    with pytest.raises(CardError, match="JSONDecodeError"):
        read_card(tmp_path)
