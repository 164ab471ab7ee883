"""Slide ingestion on real fixtures: facts, bad input, idempotency, moves, MPP, atomicity."""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from autoscope.config import compose, stores_spec
from autoscope.slides import ingest as ingest_mod
from autoscope.slides.registry import load_registry, registry_path, resolve_slide
from autoscope.stages.slides import ingest

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def tiled_tiff(path: Path, seed: int = 0, size: int = 1024) -> Path:
    """A small two-level tiled JPEG TIFF with no MPP in it."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 240, np.uint8)
    img[256:768, 256:768] = rng.integers(80, 180, (512, 512, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), photometric="rgb", compression="jpeg")
        tw.write(
            img[::4, ::4].copy(),
            tile=(256, 256),
            photometric="rgb",
            compression="jpeg",
            subfiletype=1,
        )
    return path


def make_cfg(ws: Path, *over: str):
    return compose(
        "demo",
        [f"paths.workspace={ws}", f"slides.sources=[{ws / 'src'}]", "slides.metadata=null", *over],
        stage="slides_ingest",
    )


@pytest.fixture()
def ws(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in ("cmu-1-small-region.svs", "broken.svs", "kidney-48-5-stripped.tif"):
        shutil.copy(FIX / f, src / f)
    tiled_tiff(src / "nompp.tif")
    return tmp_path


def by_name(cfg) -> dict:
    return {r["name"]: r for r in load_registry(stores_spec(cfg)).to_dict("records")}


def test_ingest_records_facts_and_bad_input(ws, capsys):
    shutil.copy(FIX / "cmu-1-small-region.svs", ws / "src" / "z_again.svs")
    (ws / "src" / "folder.svs").mkdir()
    (ws / "meta.csv").write_text(
        "path,scanner\nsrc/cmu-1-small-region.svs,GT450\nsrc/gone.svs,AT2\n"
    )
    cfg = make_cfg(ws, f"slides.metadata={ws / 'meta.csv'}")
    out = ingest(cfg)
    rows = by_name(cfg)
    cmu = rows["cmu-1-small-region"]
    assert cmu["status"] == "ok" and cmu["vendor"] == "aperio"
    assert cmu["mpp_x"] == pytest.approx(0.499) and cmu["mpp_source"] == "file"
    assert (cmu["width_px"], cmu["height_px"]) == (2220, 2967)
    assert cmu["objective_power"] == 20 and "macro" in cmu["associated_images"]
    assert cmu["scanner"] == "GT450" and cmu["file_bytes"] == os.path.getsize(
        FIX / "cmu-1-small-region.svs"
    )
    assert Path(cmu["thumbnail"]).is_file() and Path(cmu["tissue_mask"]).is_file()
    assert 0.3 < cmu["tissue_fraction"] <= 1.0
    assert rows["broken"]["status"] == "failed" and "corrupt" in rows["broken"]["error"]
    stripped = rows["kidney-48-5-stripped"]
    assert stripped["status"] == "failed" and "stripped, not tiled" in stripped["error"]
    assert rows["z_again"]["status"] == "duplicate" and "same content" in rows["z_again"]["error"]
    assert rows["folder"]["status"] == "failed" and "directory" in rows["folder"]["error"]
    assert rows["gone"]["status"] == "missing" and "not found" in rows["gone"]["error"]
    assert rows["nompp"]["status"] == "no_mpp" and rows["nompp"]["mpp_source"] == "missing"
    assert out["usable"] == 1
    assert "summary:" in capsys.readouterr().out


def test_rerun_is_idempotent_and_moves_are_repathed(ws, capsys):
    cfg = make_cfg(ws)
    ingest(cfg)
    before = load_registry(stores_spec(cfg))
    ingest(cfg)
    assert "unchanged" in capsys.readouterr().out
    pd.testing.assert_frame_equal(before, load_registry(stores_spec(cfg)))
    sid = by_name(cfg)["cmu-1-small-region"]["slide_id"]
    (ws / "src" / "moved").mkdir()
    shutil.move(ws / "src" / "cmu-1-small-region.svs", ws / "src" / "moved" / "cmu.svs")
    ingest(cfg)
    reg = load_registry(stores_spec(cfg))
    row = reg[reg["slide_id"] == sid]
    assert len(row) == 1 and row.iloc[0]["path"].endswith("moved/cmu.svs")
    assert "moved" in capsys.readouterr().out


def test_changed_file_is_updated(ws):
    cfg = make_cfg(ws)
    ingest(cfg)
    old = by_name(cfg)["nompp"]["slide_id"]
    tiled_tiff(ws / "src" / "nompp.tif", seed=1)
    ingest(cfg)
    reg = load_registry(stores_spec(cfg))
    rows = reg[reg["name"] == "nompp"]
    assert len(rows) == 1 and rows.iloc[0]["slide_id"] != old


def test_missing_mpp_becomes_usable_from_csv_or_recipe(ws):
    ingest(make_cfg(ws))
    (ws / "meta.csv").write_text("slide,mpp\nnompp,0.25\n")
    cfg = make_cfg(ws, f"slides.metadata={ws / 'meta.csv'}")
    ingest(cfg)
    row = by_name(cfg)["nompp"]
    assert row["status"] == "ok" and row["mpp_x"] == 0.25 and row["mpp_source"] == "metadata"
    assert row["mask_mpp"] == pytest.approx(0.25 * 32, rel=0.05)
    cfg = make_cfg(ws, "slides.mpp=0.5")
    ingest(cfg)
    row = by_name(cfg)["nompp"]
    assert row["status"] == "ok" and row["mpp_source"] == "recipe"
    assert by_name(cfg)["cmu-1-small-region"]["mpp_source"] == "file"


def test_interrupted_run_leaves_previous_registry(ws, monkeypatch):
    cfg = make_cfg(ws)
    ingest(cfg)
    before = registry_path(stores_spec(cfg)).read_bytes()
    tiled_tiff(ws / "src" / "late.tif", seed=3)
    tiled_tiff(ws / "src" / "nompp.tif", seed=4)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest_mod, "write_overview", boom)
    with pytest.raises(KeyboardInterrupt):
        ingest(cfg)
    assert registry_path(stores_spec(cfg)).read_bytes() == before
    assert not [p for p in registry_path(stores_spec(cfg)).parent.iterdir() if ".tmp" in p.name]


def test_resolve_slide_by_name_and_prefix(ws):
    cfg = make_cfg(ws)
    ingest(cfg)
    row = resolve_slide(stores_spec(cfg), "cmu-1-small-region")
    assert resolve_slide(stores_spec(cfg), row["slide_id"][:6])["slide_id"] == row["slide_id"]
    from autoscope.errors import UserError

    with pytest.raises(UserError, match="unknown slide"):
        resolve_slide(stores_spec(cfg), "nope")
    path = registry_path(stores_spec(cfg))  # a Stores, the data folder or the parquet file
    assert path == registry_path(stores_spec(cfg).data) == registry_path(path)
    assert resolve_slide(path, row["name"])["slide_id"] == row["slide_id"]


def test_damaged_tiles_fail_one_slide_and_the_batch_goes_on(ws):
    bad = tiled_tiff(ws / "src" / "damaged.tif", seed=7)
    with tifffile.TiffFile(bad) as tif:
        page = tif.pages[1]
        off, n = page.dataoffsets[0], page.databytecounts[0]
    data = bytearray(bad.read_bytes())
    data[off : off + n] = b"\x00" * n
    bad.write_bytes(bytes(data))
    cfg = make_cfg(ws)
    ingest(cfg)
    rows = by_name(cfg)
    assert rows["damaged"]["status"] == "failed" and "corrupt" in rows["damaged"]["error"]
    assert rows["cmu-1-small-region"]["status"] == "ok"


def test_registry_in_a_workspace_survives_a_move(ws):
    """Inside a git/DVC workspace the parquet names its files relative to itself: a clone
    elsewhere reads the same registry with paths that exist there; outside slides stay absolute."""
    (ws / ".dvc").mkdir()
    outside = ws.parent / f"{ws.name}-outside"
    outside.mkdir()
    shutil.copy(FIX / "kidney-48-5-stripped.tif", outside / "far.tif")
    cfg = make_cfg(ws, f"slides.sources=[{ws / 'src'},{outside}]", "slides.mpp=0.5")
    ingest(cfg)
    reg = registry_path(stores_spec(cfg))
    raw = pd.read_parquet(reg).set_index("name")
    assert raw.loc["cmu-1-small-region", "path"].startswith("../")
    assert not os.path.isabs(raw.loc["cmu-1-small-region", "thumbnail"])
    assert raw.loc["far", "path"] == str(outside / "far.tif")
    moved = ws.parent / f"{ws.name}-moved"
    shutil.move(ws, moved)
    rows = {
        r["name"]: r
        for r in load_registry(reg.as_posix().replace(str(ws), str(moved))).to_dict("records")
    }
    assert rows["cmu-1-small-region"]["path"] == str(moved / "src" / "cmu-1-small-region.svs")
    assert Path(rows["cmu-1-small-region"]["thumbnail"]).is_file()
    assert Path(rows["cmu-1-small-region"]["tissue_mask"]).is_file()
    assert rows["far"]["path"] == str(outside / "far.tif")


def test_show_a_slide_whose_name_looks_like_json(ws, capsys):
    from autoscope.stages.slides import show_view

    src = ws / "src"
    shutil.move(src / "cmu-1-small-region.svs", src / "[2019] case 1.svs")
    cfg = make_cfg(ws)
    ingest(cfg)
    capsys.readouterr()
    assert resolve_slide(stores_spec(cfg), "[2019] case 1")["status"] == "ok"
    assert (
        resolve_slide(stores_spec(cfg), str(src / "[2019] case 1.svs"))["name"] == "[2019] case 1"
    )
    show_view(cfg, ["[2019] case 1"])
    out = capsys.readouterr().out
    assert "name: [2019] case 1" in out and "level_dimensions: [[2220, 2967]" in out
