"""Pre-cut patch imports from the real fixture tiles: folder per class and CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoscope.datasets.store import load_split, read_manifest
from autoscope.errors import UserError
from autoscope.stages.dataset import build as build_dataset

TILES = Path(__file__).parents[1] / "fixtures" / "tiles"
TUMOR = sorted(p for p in TILES.glob("*.png") if "nuclei" in p.name or p.name.startswith("tissue"))
STROMA = sorted(p for p in TILES.glob("*.png") if "no-tissue" in p.name or "white" in p.name)


def class_folders(root: Path) -> Path:
    for name, files in (("tumor", TUMOR), ("Stroma", STROMA)):
        (root / name).mkdir(parents=True)
        for f in files:
            (root / name / f.name).symlink_to(f)
    return root


def test_folder_per_class_import(workspace, tmp_path: Path) -> None:
    folder = class_folders(tmp_path / "tiles")
    res = build_dataset(
        workspace.cfg(
            f"dataset.sources=[{{type: folder, path: {folder}, mpp: 0.5}}]",
            "dataset.name=tiles",
            "dataset.patch_px=32",
        )
    )
    d = Path(res["dir"])
    m = read_manifest(d)
    assert len(m) == len(TUMOR) + len(STROMA) and m["patch_id"].is_unique
    assert m.groupby("label").size().to_dict() == {"stroma": len(STROMA), "tumor": len(TUMOR)}
    assert (
        (m["slide_id"] == "").all() and (m["pyramid_level"] == -1).all() and (m["mpp"] == 0.5).all()
    )
    assert (m.groupby("group")["split"].nunique() == 1).all()
    imgs = np.concatenate([load_split(d, s)[0] for s in ("train", "val", "test")])
    assert imgs.shape == (len(m), 32, 32, 3)
    row = m.iloc[0]
    assert row.source == Path(row.source).name  # outside the workspace: no host path, the name
    want = np.asarray(Image.open(TILES / row.source).convert("RGB"))
    img = load_split(d, row.split)[0][0]
    assert abs(float(img.mean()) - float(want.mean())) < 12  # the tile, centre-cropped and resized
    stats = json.loads((d / "stats.json").read_text())
    assert stats["by_class"] == {"tumor": len(TUMOR), "stroma": len(STROMA)}


def test_csv_import_with_groups_and_given_splits(workspace, tmp_path: Path) -> None:
    rows = ["path,label,group,split"]
    for i, p in enumerate(TUMOR + STROMA):
        label = "tumor" if p in TUMOR else "stroma"
        split = "test" if i % 5 == 0 else ""
        rows.append(f"{p},{label},case{i % 4},{split}")
    csv = tmp_path / "tiles.csv"
    csv.write_text("\n".join(rows) + "\n")
    res = build_dataset(
        workspace.cfg(f"dataset.sources=[{{type: csv, path: {csv}}}]", "dataset.name=tiles_csv")
    )
    m = read_manifest(Path(res["dir"]))
    assert len(m) == len(TUMOR) + len(STROMA)
    assert set(m["group"]) == {f"case{i}" for i in range(4)}
    assert (m.groupby("group")["split"].nunique() == 1).all()  # no leakage across cases
    assert set(m.loc[m["group"] == "case0", "split"]) == {"test"}  # given splits pull the group


def test_undecodable_image_fails_naming_the_file(workspace, tmp_path: Path) -> None:
    folder = class_folders(tmp_path / "tiles")
    (folder / "tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cfg = workspace.cfg(f"dataset.sources=[{{type: folder, path: {folder}}}]", "dataset.name=tiles")
    with pytest.raises(UserError, match=r"broken.png: image does not decode"):
        build_dataset(cfg)
    root = Path(cfg.paths.data) / "datasets"
    assert not (root / "tiles").exists() and not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_unknown_class_folder(workspace, tmp_path: Path) -> None:
    folder = class_folders(tmp_path / "tiles")
    (folder / "fat").mkdir()
    (folder / "fat" / "a.png").symlink_to(TUMOR[0])
    with pytest.raises(UserError, match=r"fat/a.png: unknown class 'fat'"):
        build_dataset(workspace.cfg(f"dataset.sources=[{{type: folder, path: {folder}}}]"))
