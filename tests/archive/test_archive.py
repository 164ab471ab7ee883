"""Archive: best-run choice, thresholds, model card, MLflow registry, BentoML store, idempotency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import compose_cfg, fake_run

from autoscope.errors import UserError
from autoscope.stages import archive


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


def test_archive_best_run_writes_card_registry_and_bento(workspace: Path, capsys) -> None:
    import bentoml
    import mlflow
    import torch

    cfg = compose_cfg(workspace)
    fake_run(cfg, val_acc=0.7, seed=1)
    best = fake_run(cfg, val_acc=0.95, seed=2)
    out = archive.run(cfg)
    assert out["run_id"] == best and out["version"] == 1 and out["new"] is True
    vdir = Path(cfg.paths.outputs) / "models" / "tissue_classification" / "v1"
    card = json.loads((vdir / "metadata.json").read_text())
    assert card["name"] == "demo-tissue_classification" and card["run_id"] == best
    assert [c["name"] for c in card["classes"]] == ["tumor", "stroma"]
    assert card["classes"][0]["color"] == "#d62728"
    assert card["input"]["patch_px"] == 32 and card["input"]["mpp"] == 1.0
    assert card["input"]["mean"] == [0.5, 0.5, 0.5] and card["arch"]["name"] == "tiny_cnn"
    assert card["metrics"]["val/acc"] == pytest.approx(0.95)
    assert card["dataset_version"] == "0123456789abcdef.dir" and card["code_version"] == "deadbeef"
    assert card["bentoml_tag"] == "demo-tissue_classification:v1"
    assert card["tissue"]["min_saturation"] == 0.07 and "_target_" not in card["tissue"]
    assert set(card["review"]) == {"confusion_matrix", "sample_grid"}
    assert all((vdir / p).is_file() for p in card["review"].values())
    state = torch.load(vdir / "model.pt", weights_only=True)
    assert isinstance(state, dict) and state
    assert not list(vdir.parent.glob(".v*")), "staging folders left behind"

    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    mv = client.get_model_version_by_alias("demo-tissue_classification", "champion")
    assert int(mv.version) == 1 and mv.run_id == best
    assert mv.tags["bentoml_tag"] == "demo-tissue_classification:v1"
    model = bentoml.models.get("demo-tissue_classification:v1")
    assert Path(model.path).is_relative_to(Path(cfg.paths.bentoml_home))
    assert json.loads((Path(model.path) / "metadata.json").read_text())["run_id"] == best
    assert {p.suffix for p in Path(model.path).rglob("*.p*")} <= {".pt", ".png"}  # no pickles

    again = archive.run(cfg)
    assert again["version"] == 1 and again["new"] is False
    assert len(client.search_model_versions("name='demo-tissue_classification'")) == 1

    archive.models_view(cfg, [])
    table = capsys.readouterr().out
    assert "demo-tissue_classification" in table and "champion" in table and "0.9500" in table


def test_archive_named_run_gets_next_version(workspace: Path) -> None:
    cfg = compose_cfg(workspace)
    first = fake_run(cfg, val_acc=0.9, seed=1)
    second = fake_run(cfg, val_acc=0.8, seed=2)
    assert archive.run(cfg)["run_id"] == first
    out = archive.run(compose_cfg(workspace, f"run={second}"))
    assert out["version"] == 2 and out["run_id"] == second
    assert (Path(cfg.paths.outputs) / "models" / "tissue_classification" / "v2").is_dir()


def test_archive_refuses_run_below_threshold(workspace: Path) -> None:
    cfg = compose_cfg(workspace, "archive.thresholds.min={val/acc:0.99}")
    fake_run(cfg, val_acc=0.9)
    with pytest.raises(UserError, match=r"val/acc=0.9000 is below the minimum 0.99"):
        archive.run(cfg)
    assert not (Path(cfg.paths.outputs) / "models").exists()


def test_archive_unknown_run_and_empty_project(workspace: Path) -> None:
    cfg = compose_cfg(workspace)
    with pytest.raises(UserError, match="no MLflow experiment 'demo'"):
        archive.run(cfg)
    fake_run(cfg)
    with pytest.raises(UserError, match="run=nope: no such MLflow run"):
        archive.run(compose_cfg(workspace, "run=nope"))


def test_archive_review_heatmap_of_a_slide(workspace: Path) -> None:
    from autoscope.slides.synth import make_synthetic_slide

    slide = make_synthetic_slide(workspace / "val_000.tif", seed=5, width_px=1024, height_px=768)
    cfg = compose_cfg(workspace, f"archive.review_slide={slide.path}")
    fake_run(cfg)
    card = json.loads(Path(archive.run(cfg)["card"]).read_text())
    assert card["review_slide"] == {"path": "val_000.tif"}  # relative to the workspace
    text = Path(archive.run(cfg)["card"]).read_text()
    assert str(workspace) not in text and str(workspace.resolve()) not in text  # no host path
    vdir = Path(cfg.paths.outputs) / "models" / "tissue_classification" / "v1"
    assert (vdir / card["review"]["heatmap"]).is_file()
    assert (vdir / card["review"]["heatmap_overview"]).is_file()


def test_archive_goes_on_without_a_review_slide(workspace: Path, capsys) -> None:
    cfg = compose_cfg(workspace, "archive.review_slide=no_such_slide")
    fake_run(cfg)
    card = json.loads(Path(archive.run(cfg)["card"]).read_text())
    assert "heatmap" not in card["review"] and card["review_slide"]["error"]
    assert "no review heatmap" in capsys.readouterr().out
