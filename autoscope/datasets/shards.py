"""Pixels into shards: a few large uint8 `.npy` files `[N, patch_px, patch_px, 3]`, memory-mappable.

Rows are laid out in manifest order (split, then slide), so a split is a few contiguous ranges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ProgressFn = Callable[[int], None]


def shard_layout(n: int, patch_px: int, shard_mb: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(shard number, index within shard) of n rows, and the rows per shard."""
    per_shard = max(1, int(shard_mb * 2**20) // (patch_px * patch_px * 3))
    i = np.arange(n)
    return i // per_shard, i % per_shard, per_shard


def shard_name(k: int) -> str:
    """File name of shard k, relative to the dataset folder."""
    return f"shards/shard_{k:05d}.npy"


def read_slide_patches(
    path: str, mpp_x: float, coords: np.ndarray, mpp: float, patch_px: int, workers: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (patches uint8 [B,P,P,3], coords [B,2]) for the given level-0 corners of one slide."""
    try:
        from autoscope.slides.parallel import iter_batches
    except ImportError:
        iter_batches = None
    if iter_batches is not None and workers > 1 and len(coords) > 64:
        yield from iter_batches(
            path, coords, mpp, patch_px, batch_size=64, workers=workers, queue_depth=4, mpp_x=mpp_x
        )
        return
    from autoscope.slides.reader import open_reader

    with open_reader(path, mpp_x=mpp_x) as reader:
        for s in range(0, len(coords), 64):
            chunk = coords[s : s + 64]
            out = np.empty((len(chunk), patch_px, patch_px, 3), np.uint8)
            for j, (x, y) in enumerate(chunk):
                reader.read_patch(int(x), int(y), mpp, patch_px, out=out[j])
            yield out, chunk


def pyramid_level(path: str, mpp_x: float, mpp: float) -> int:
    """The pyramid level the reader reads for a target mpp."""
    from autoscope.slides.reader import open_reader

    with open_reader(path, mpp_x=mpp_x) as reader:
        return int(reader.best_level(mpp)[0])


class ColourStats:
    """Running per-channel mean and std of patches (values in [0, 1]), from exact histograms."""

    def __init__(self) -> None:
        self.hist = np.zeros((3, 256), np.int64)

    def add(self, patches: np.ndarray) -> None:
        """Add a uint8 [B,H,W,3] batch."""
        for c in range(3):
            self.hist[c] += np.bincount(patches[..., c].ravel(), minlength=256)

    def result(self) -> dict[str, list[float]]:
        """{"mean": [r,g,b], "std": [r,g,b]}."""
        v = np.arange(256) / 255.0
        n = np.maximum(self.hist.sum(axis=1), 1)
        mean = (self.hist * v).sum(axis=1) / n
        std = np.sqrt(np.maximum((self.hist * v * v).sum(axis=1) / n - mean**2, 0))
        return {
            "mean": [round(float(x), 5) for x in mean],
            "std": [round(float(x), 5) for x in std],
        }


def write_shards(
    plan: pd.DataFrame,
    out_dir: Path,
    patch_px: int,
    shard_mb: float,
    workers: int,
    slides: dict[str, tuple[str, float]],
    progress: ProgressFn | None = None,
) -> ColourStats:
    """Cut every planned patch into the shards under out_dir (plan gets shard/index filled).

    Args:
        plan: rows in final order; slide rows have slide_id, x, y, mpp; image rows have source.
        out_dir: the (temporary) dataset folder.
        patch_px: patch side in pixels.
        shard_mb: target shard size in MiB.
        workers: reader processes per slide (when the slide engine's parallel reader exists).
        slides: slide_id -> (path, level-0 mpp).
        progress: called with the number of patches written after each batch.

    Raises:
        UserError: an image does not decode (the caller removes the temporary folder).
    """
    from autoscope.datasets.imports import load_image

    shard, index, _ = shard_layout(len(plan), patch_px, shard_mb)
    plan["shard"] = [shard_name(k) for k in shard]
    plan["index"] = index
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k in np.unique(shard):
        n = int((shard == k).sum())
        arrays[int(k)] = np.lib.format.open_memmap(
            out_dir / shard_name(int(k)),
            mode="w+",
            dtype=np.uint8,
            shape=(n, patch_px, patch_px, 3),
        )
    stats = ColourStats()
    if not plan.index.equals(pd.RangeIndex(len(plan))):
        raise ValueError("write_shards needs a plan with a 0..N-1 index (its row positions)")
    is_slide = (plan["slide_id"].astype(str) != "").to_numpy()
    for sid, rows in plan[is_slide].groupby("slide_id", sort=False):
        path, mpp_x = slides[sid]
        where: dict[tuple[int, int], list[int]] = defaultdict(list)
        for p, x, y in zip(rows.index, rows["x"], rows["y"], strict=True):
            where[(int(x), int(y))].append(int(p))
        coords = np.array(list(where.keys()), np.int64)
        coords = coords[np.lexsort((coords[:, 0], coords[:, 1]))]  # row by row: tile cache hits
        mpp = float(rows["mpp"].iloc[0])
        for patches, xy in read_slide_patches(path, mpp_x, coords, mpp, patch_px, workers):
            stats.add(patches)
            for patch, (x, y) in zip(patches, xy, strict=True):
                for p in where[(int(x), int(y))]:
                    arrays[int(shard[p])][index[p]] = patch
            if progress:
                progress(len(patches))
    for p, src in zip(np.flatnonzero(~is_slide), plan.loc[~is_slide, "source"], strict=True):
        img = load_image(src, patch_px)
        arrays[int(shard[p])][index[p]] = img
        stats.add(img[None])
        if progress:
            progress(1)
    for a in arrays.values():
        a.flush()
    del arrays
    return stats
