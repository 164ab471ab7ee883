"""Exact duplicate pre-cut images: dropped at build, counted, said, and kept in stats/report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoscope.datasets.store import read_manifest
from autoscope.stages.dataset import build as build_dataset

DROPPED = "exact duplicate images dropped (same bytes as another file; first kept)"


def _png(path: Path, seed: int) -> Path:
    """A distinct small noise image (its bytes differ for every seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_duplicates_are_counted_said_and_recorded(workspace, tmp_path: Path, capsys) -> None:
    root = tmp_path / "tiles"
    for i in range(6):
        _png(root / "tumor" / f"t{i}.png", seed=i)
        _png(root / "stroma" / f"s{i}.png", seed=100 + i)
    shutil.copy(root / "tumor" / "t0.png", root / "tumor" / "t0_copy.png")  # same label
    shutil.copy(root / "tumor" / "t0.png", root / "tumor" / "t0_copy2.png")
    shutil.copy(root / "tumor" / "t1.png", root / "stroma" / "s9.png")  # same bytes, other label
    res = build_dataset(
        workspace.cfg(
            f"dataset.sources=[{{type: folder, path: {root}, mpp: 0.5}}]",
            "dataset.name=dups",
            "dataset.patch_px=16",
        )
    )
    out = capsys.readouterr().out
    d = Path(res["dir"])
    m = read_manifest(d)
    assert len(m) == 12 and m["patch_id"].is_unique and res["duplicates_dropped"] == 3
    # folders are read in sorted order (stroma before tumor): the stroma copy of t1 is kept
    assert m.loc[m["slide"] == "s9", "label"].tolist() == ["stroma"]
    assert "t1" not in set(m["slide"])
    assert f"dataset dups: 3 {DROPPED}, e.g. t0.png = t0_copy.png" in out
    assert (
        "dataset dups: WARNING: 1 of these duplicates carry another label than the kept copy "
        "(its label kept; check the labels), e.g. s9.png (stroma) = t1.png (tumor)"
    ) in out
    assert "another group" not in out  # folder images have no groups of their own
    stats = json.loads((d / "stats.json").read_text())
    assert stats["duplicates"]["dropped"] == 3 and stats["patches"] == 12
    dups = stats["duplicates"]
    assert (dups["label_conflicts"], dups["group_conflicts"]) == (1, 0)
    report = (d / "report" / "report.md").read_text()
    assert "## Duplicates" in report and f"3 {DROPPED}" in report
    assert "1 of these duplicates carry another label" in report


@pytest.mark.parametrize("dup", [True, False], ids=["group-conflict", "no-duplicates"])
def test_duplicate_across_groups_is_warned(workspace, tmp_path: Path, capsys, dup: bool) -> None:
    files = [_png(tmp_path / "img" / f"i{i}.png", seed=i) for i in range(10)]
    rows = ["path,label,group"]
    rows += [f"{p},{'tumor' if i % 2 == 0 else 'stroma'},case{i % 5}" for i, p in enumerate(files)]
    if dup:  # the bytes of i0.png (tumor, case0) again, same label, another case
        rows.append(f"{shutil.copy(files[0], tmp_path / 'img' / 'again.png')},tumor,case2")
    csv = tmp_path / "tiles.csv"
    csv.write_text("\n".join(rows) + "\n")
    res = build_dataset(
        workspace.cfg(f"dataset.sources=[{{type: csv, path: {csv}}}]", "dataset.name=dups_csv")
    )
    out = capsys.readouterr().out
    stats = json.loads((Path(res["dir"]) / "stats.json").read_text())
    report = (Path(res["dir"]) / "report" / "report.md").read_text()
    if not dup:
        assert DROPPED not in out and "Duplicates" not in report
        assert stats["duplicates"]["dropped"] == 0 == res["duplicates_dropped"]
        return
    assert stats["duplicates"] == {
        "dropped": 1,
        "label_conflicts": 0,
        "group_conflicts": 1,
        "example": "i0.png = again.png",
        "label_example": "",
        "group_example": "i0.png (case0) = again.png (case2)",
    }
    assert f"dataset dups_csv: 1 {DROPPED}, e.g. i0.png = again.png" in out
    assert "WARNING: 1 of these duplicates sit in another group than the kept copy" in out
    assert "another label" not in out
