"""`autoscope infer`: model from the card, slide lists, resume, a corrupt slide, instances."""

from __future__ import annotations

import json
import shutil

import pytest
from infer_helpers import archive_model

from autoscope.errors import UserError
from autoscope.infer.models import resolve_model_dir
from autoscope.infer.runner import select_slides
from autoscope.infer.spec import parse_bytes


def _cfg(workspace, *overrides):
    from autoscope.config import compose

    return compose("demo", [f"paths.workspace={workspace}", *overrides], stage="infer")


@pytest.fixture()
def workspace(tmp_path, synth_slide, fixtures_dir):
    """A workspace with one archived model and a list file: two good slides and a corrupt one."""
    archive_model(tmp_path / "outputs" / "demo" / "models", mpp=2.0, patch_px=32)
    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(synth_slide.path, slides / "a.tif")
    shutil.copy(fixtures_dir / "cmu-1-small-region.svs", slides / "b.svs")
    shutil.copy(fixtures_dir / "broken.svs", slides / "broken.svs")
    listing = tmp_path / "slides.txt"
    listing.write_text("".join(f"{slides / n}\n" for n in ("a.tif", "broken.svs", "b.svs")))
    return tmp_path, listing


def test_infer_resumes_and_reports_corrupt_slide(workspace, capsys):
    from autoscope.stages.infer import run

    ws, listing = workspace
    cfg = _cfg(ws, f"infer.slides={listing}", "infer.progress=false")
    with pytest.raises(UserError, match="1 of 3 slide"):
        run(cfg)
    out_dir = ws / "outputs" / "demo" / "infer" / "tissue_classification" / "v1"
    text = capsys.readouterr().out
    assert "broken" in text and "FAILED" in text and str(out_dir) in text
    for name, suffix in (("a", "tif"), ("b", "svs")):
        text = (out_dir / name / "summary.json").read_text()
        summary = json.loads(text)
        assert summary["model"]["version"] == 1 and summary["model"]["patch_px"] == 32
        assert summary["tiles"]["total"] > 0
        # no host path: the slide and the folder are named relative to the workspace
        assert str(ws) not in text and str(ws.resolve()) not in text
        assert summary["slide"]["path"] == f"slides/{name}.{suffix}"
        assert summary["out_dir"] == f"outputs/demo/infer/tissue_classification/v1/{name}"
    assert not (out_dir / "broken").exists()
    stamp = (out_dir / "a" / "summary.json").stat().st_mtime_ns
    with pytest.raises(UserError, match="1 of 3 slide.*2 skipped"):
        run(cfg)
    assert (out_dir / "a" / "summary.json").stat().st_mtime_ns == stamp
    assert "2 slide(s) already done" in capsys.readouterr().out


def test_infer_two_instances(workspace):
    from autoscope.stages.infer import run

    ws, listing = workspace
    good = ws / "good.txt"
    good.write_text("\n".join(ln for ln in listing.read_text().splitlines() if "broken" not in ln))
    result = run(_cfg(ws, f"infer.slides={good}", "infer.instances=2", "infer.workers=1"))
    assert result["done"] == 2 and result["failed"] == 0
    out_dir = ws / "outputs" / "demo" / "infer" / "tissue_classification" / "v1"
    paths = {json.loads(p.read_text())["slide"]["path"] for p in out_dir.glob("*/summary.json")}
    assert paths == {"slides/a.tif", "slides/b.svs"}  # the instances got the workspace too


def test_model_versions_and_errors(tmp_path):
    models = tmp_path / "models"
    with pytest.raises(UserError, match="no archived model"):
        resolve_model_dir(models, "m")
    archive_model(models, "m", 1)
    archive_model(models, "m", 2)
    assert resolve_model_dir(models, "m").name == "v2"
    assert resolve_model_dir(models, None, "v1").name == "v1"
    assert resolve_model_dir(models, "m", 1).name == "v1"
    with pytest.raises(UserError, match="unknown model 'x'"):
        resolve_model_dir(models, "x")
    with pytest.raises(UserError, match="no version 7"):
        resolve_model_dir(models, "m", 7)


def test_select_slides_by_glob_list_and_query(tmp_path, fixtures_dir):
    import pandas as pd

    reg = pd.DataFrame(
        [
            {
                "slide_id": "a" * 16,
                "name": "cmu-1-small-region",
                "status": "ok",
                "mpp_x": 0.5,
                "mpp_source": "metadata",
                "path": str((fixtures_dir / "cmu-1-small-region.svs").resolve()),
            },
            {
                "slide_id": "b" * 16,
                "name": "broken",
                "status": "failed",
                "mpp_x": None,
                "mpp_source": "missing",
                "path": str((fixtures_dir / "broken.svs").resolve()),
            },
        ]
    )
    jobs = select_slides("status == 'ok'", reg)
    assert [(j.name, j.mpp_x) for j in jobs] == [("cmu-1-small-region", 0.5)]
    jobs = select_slides(str(fixtures_dir / "*.svs"), reg)
    assert sorted(j.name for j in jobs) == ["broken", "cmu-1-small-region"]
    with pytest.raises(UserError, match="bad registry query"):
        select_slides("status ==", reg)
    with pytest.raises(UserError, match="matches no slide"):
        select_slides("status == 'nope'", reg)
    assert parse_bytes("2GB") == 2 * 2**30 and parse_bytes(None) is None
    with pytest.raises(UserError, match="infer.memory"):
        parse_bytes("lots")
