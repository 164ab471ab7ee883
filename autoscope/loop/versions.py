"""Write a corrected manifest as a new dataset folder: shards, stats, report, lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.atomic import atomic_dir, write_json
from autoscope.datasets.diff import LINEAGE
from autoscope.datasets.report import compute_stats, write_pictures, write_report, write_stats
from autoscope.datasets.shards import ColourStats, read_slide_patches, shard_layout, shard_name
from autoscope.datasets.splits import SPLITS
from autoscope.datasets.store import MANIFEST, dataset_version
from autoscope.errors import UserError
from autoscope.loop.rounds import dataset_pixels


def _pixels(parent: Path, m: pd.DataFrame, slides: dict[str, tuple[str, float]]) -> np.ndarray:
    """uint8 [N,P,P,3] of every row: kept rows from the parent's shards, added rows cut anew."""
    patch_px = int(m["patch_px"].iloc[0])
    out = np.empty((len(m), patch_px, patch_px, 3), np.uint8)
    old = m["index"].to_numpy() >= 0
    if old.any():
        out[old] = dataset_pixels(parent, m[old])
    for sid, g in m[~old].groupby("slide_id", sort=False):
        path, mpp_x = slides[str(sid)]
        coords = g[["x", "y"]].to_numpy(np.int64)
        pos = {(int(x), int(y)): i for i, x, y in zip(g.index, g["x"], g["y"], strict=True)}
        mpp = float(g["mpp"].iloc[0])
        for patches, xy in read_slide_patches(path, mpp_x, coords, mpp, patch_px, 1):
            for p, (x, y) in zip(patches, xy, strict=True):
                out[pos[(int(x), int(y))]] = p
    return out


def write_version(
    parent: Path,
    name: str,
    manifest: pd.DataFrame,
    classes: list[dict[str, Any]],
    slides: dict[str, tuple[str, float]],
    lineage: dict[str, Any],
    shard_mb: float = 256.0,
) -> dict[str, Any]:
    """Publish `manifest` as dataset `name` beside `parent` (never over an existing folder).

    Returns:
        {"name", "dir", "version", "patches"}.

    Raises:
        UserError: the folder already exists (nothing is overwritten in place).
    """
    final = parent.parent / name
    if final.exists():
        raise UserError(f"{final}: dataset version '{name}' exists already (never overwritten)")
    stats0 = json.loads((parent / "stats.json").read_text())
    m = manifest.copy()
    m["_order"] = m["split"].map({s: i for i, s in enumerate(SPLITS)})
    m = m.sort_values(["_order", "slide", "y", "x", "patch_id"], kind="mergesort")
    m = m.drop(columns="_order").reset_index(drop=True)
    patch_px = int(m["patch_px"].iloc[0])
    pixels = _pixels(parent, m, slides)
    shard, index, _ = shard_layout(len(m), patch_px, shard_mb)
    names = [class_["name"] for class_ in classes]
    with atomic_dir(final) as tmp:
        (tmp / "shards").mkdir()
        for k in np.unique(shard):
            np.save(tmp / shard_name(int(k)), pixels[shard == k])
        m["shard"], m["index"] = [shard_name(int(k)) for k in shard], index
        m.to_parquet(tmp / MANIFEST, index=False)
        colour = ColourStats()
        colour.add(pixels)
        keep = ("patch_px", "mpp", "split_by", "seed")
        extra = {"name": name, **{k: stats0[k] for k in keep if k in stats0}}
        stats = compute_stats(m, names, colour.result(), extra)
        write_stats(tmp, stats)
        pictures = write_pictures(tmp, m, classes, patch_px, int(stats0.get("seed", 0)))
        write_report(tmp, stats, pictures)
        write_json(tmp / LINEAGE, lineage)
    return {"name": name, "dir": str(final), "version": dataset_version(final), "patches": len(m)}
