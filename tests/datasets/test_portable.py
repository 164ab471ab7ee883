"""A dataset version is a function of pixels, labels and parameters: equal in any checkout."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest

from autoscope.datasets.store import MANIFEST, load_split, read_manifest
from autoscope.portable import portable_path, resolve_path
from autoscope.stages.dataset import build as build_dataset

TILES = Path(__file__).parents[1] / "fixtures" / "tiles"


def _checkout(base, root: Path):
    """A fresh workspace at `root` holding copies of the raw inputs, ingested there."""
    from autoscope.stages.slides import ingest

    raw_root = root / "data" / "demo" / "raw"
    shutil.copytree(base.root / "data" / "demo" / "raw", raw_root)
    points = root / "points"
    points.mkdir()
    (points / "slide_000.csv").write_text("x,y,class\n300,400,tumor\n1000,700,stroma\n")
    tiles = root / "tiles"
    for name, pick in (("tumor", "nuclei"), ("stroma", "white")):
        (tiles / name).mkdir(parents=True)
        for f in sorted(TILES.glob(f"*{pick}*.png")):
            shutil.copy(f, tiles / name / f.name)
    ws = type(base)(root, raw_root / "synthetic")
    ingest(ws.cfg())
    return ws


def _sources(ws) -> str:
    """Every kind of source, all inside the workspace: regions, points, images, slide labels."""
    return (
        "dataset.sources=["
        f"{{type: geojson, glob: '{ws.raw}/*.geojson'}},"
        f"{{type: points, path: {ws.root / 'points'}}},"
        f"{{type: folder, path: {ws.root / 'tiles'}, mpp: 1.0}},"
        "{type: slide_labels, column: diagnosis, max_patches_per_slide: 5}]"
    )


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _texts(d: Path) -> dict[str, str]:
    """Every file's text; parquet tables (maybe compressed) as the text of all their cells."""
    out = {}
    for name, data in _files(d).items():
        if name.endswith(".parquet"):
            out[name] = pd.read_parquet(d / name).astype(str).to_csv()
        else:
            out[name] = data.decode("latin-1")
    return out


@pytest.fixture(scope="module")
def two_checkouts(base_workspace, tmp_path_factory: pytest.TempPathFactory):
    """The same dataset built in two workspaces at different places (and depths)."""
    old = os.umask(0o002)  # a group-shared server: results are group-readable and writable
    try:
        out = []
        for root in (
            tmp_path_factory.mktemp("checkout_a") / "ws",
            tmp_path_factory.mktemp("checkout_b") / "deeper" / "clone",
        ):
            ws = _checkout(base_workspace, root)
            cfg = ws.cfg(_sources(ws), "dataset.name=mixed")
            out.append((ws, build_dataset(cfg)))
        return out
    finally:
        os.umask(old)


def test_same_inputs_give_the_same_version_in_another_checkout(two_checkouts) -> None:
    (wa, a), (wb, b) = two_checkouts
    assert wa.root != wb.root and a["dir"] != b["dir"]
    assert a["version"] == b["version"] and a["patches"] == b["patches"]
    da, db = Path(a["dir"]), Path(b["dir"])
    assert (da / MANIFEST).read_bytes() == (db / MANIFEST).read_bytes()
    assert _files(da) == _files(db)  # shards, stats, report, points: byte for byte


def test_no_host_path_in_the_dataset_folder(two_checkouts) -> None:
    for ws, res in two_checkouts:
        d = Path(res["dir"])
        for name, text in _texts(d).items():
            for needle in {str(ws.root), str(ws.root.resolve()), str(ws.root.parent)}:
                assert needle not in text, f"{needle} in {name}"
        m = read_manifest(d)
        assert {"geojson", "points", "folder", "registry"} <= {
            _kind(s) for s in m["source"].dropna()
        }
        files = [s for s in m["source"].dropna() if not str(s).startswith("registry:")]
        assert files and not [s for s in files if os.path.isabs(s)]
        for s in files:  # readers resolve a source against the workspace
            assert resolve_path(s, ws.root).is_file(), s
        pts = pd.read_parquet(d / "points.parquet")
        assert set(pts["source"]) == {"points/slide_000.csv"}


def _kind(source: str) -> str:
    if source.startswith("registry:"):
        return "registry"
    if source.startswith("points/"):
        return "points"
    return "folder" if source.startswith("tiles/") else "geojson"


def test_outputs_follow_the_umask(two_checkouts) -> None:
    d = Path(two_checkouts[0][1]["dir"])
    assert stat.S_IMODE(d.stat().st_mode) == 0o775
    for p in d.rglob("*"):
        want = 0o775 if p.is_dir() else 0o664
        assert stat.S_IMODE(p.stat().st_mode) == want, p
    x, y = load_split(d, "train")  # the pixels read back as usual
    assert len(x) == len(y) > 0


def test_portable_path_rules(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "data").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(ws)
    assert portable_path(ws / "data" / "a.svs", ws) == "data/a.svs"
    assert portable_path(link / "data" / "a.svs", ws) == "data/a.svs"  # through a link
    assert portable_path(ws / "data" / "a.svs", link) == "data/a.svs"
    assert portable_path("/elsewhere/wsi/b.svs", ws) == "b.svs"  # outside: the file name
    assert portable_path("/elsewhere/wsi/b.svs", None) == "b.svs"
    assert portable_path("rel/c.tif", ws) == "rel/c.tif"
    assert portable_path(ws, ws) == "."
    assert resolve_path("data/a.svs", ws) == ws / "data" / "a.svs"
    assert resolve_path("/x/y.svs", ws) == Path("/x/y.svs")
