"""A tiny, learnable patch dataset in the contract's layout (manifest.parquet + shards/*.npy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("tumor", "stroma")
SPLITS = {"train": 96, "val": 32, "test": 32}


def make_tiny_dataset(folder: Path, patch_px: int = 32, seed: int = 0) -> Path:
    """Write two easy classes: dark purple blobs (tumor) vs pale pink stripes (stroma)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shards").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:patch_px, 0:patch_px]
    images, rows = [], []
    for split, n in SPLITS.items():
        for i in range(n):
            label = i % 2
            if label == 0:
                base = np.array([110, 60, 150]) + rng.normal(0, 12, (patch_px, patch_px, 3))
            else:
                stripe = 25 * np.sin((xx + yy + rng.integers(0, 8)) / 3.0)[..., None]
                noise = rng.normal(0, 8, (patch_px, patch_px, 3))
                base = np.array([230, 170, 200]) + stripe + noise
            images.append(np.clip(base, 0, 255).astype(np.uint8))
            k = len(rows)
            rows.append(
                {
                    "patch_id": f"p{k:05d}",
                    "slide_id": f"{k % 4:016x}",
                    "slide": f"s{k % 4}",
                    "x": 0,
                    "y": 0,
                    "pyramid_level": 0,
                    "mpp": 1.0,
                    "patch_px": patch_px,
                    "label": CLASSES[label],
                    "label_idx": label,
                    "label_level": "tissue",
                    "split": split,
                    "group": f"s{k % 4}",
                    "shard": "shards/000.npy",
                    "index": k,
                }
            )
    np.save(folder / "shards" / "000.npy", np.stack(images))
    pd.DataFrame(rows).to_parquet(folder / "manifest.parquet", index=False)
    return folder


# Overrides that make any training recipe tiny: an 8/16-channel net on 32 px, one thread.
TINY_TRAIN = [
    "model.net.widths=[8,16]",
    "model.net.depths=[1,1]",
    "model.net.stem_width=8",
    "model.input_px=32",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=64",
    "trainer.sample_grid=8",
    "trainer.threads=1",
]
