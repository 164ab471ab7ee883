"""The segmentation dataset's report pictures: patches with masks overlaid, pixels per class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from autoscope.datasets.report import _montage
from autoscope.datasets.seg_masks import mask_file
from autoscope.datasets.splits import SPLITS

MONTAGE_PATCHES = 18  # patches in the mask montage (image | mask pairs on a 6 x 6 grid)


def overlay(
    rgb: np.ndarray, mask: np.ndarray, colors: np.ndarray, alpha: float = 0.45
) -> np.ndarray:
    """uint8 RGB with the class colours of `mask` blended in (255 = ignore: left as it is)."""
    out = rgb.astype(np.float32)
    has = mask != 255
    out[has] = (1 - alpha) * out[has] + alpha * colors[mask[has]].astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def mask_montage(
    ds_dir: Path, plan: pd.DataFrame, colors: list[str | None], seed: int, path: Path
) -> Path:
    """Seeded patches, each shown plain and with its mask blended in (ignored pixels left)."""
    from PIL import Image

    from autoscope.infer.raster import class_colors

    rng = np.random.default_rng(seed)
    pick = plan.iloc[np.sort(rng.choice(len(plan), min(len(plan), MONTAGE_PATCHES), replace=False))]
    rgb = np.array(class_colors([{"color": c} for c in colors]))
    tiles = []  # image, overlay, image, overlay ...: pairs side by side (an even grid side)
    for shard, index in zip(pick["shard"], pick["index"], strict=True):
        img = np.asarray(np.load(ds_dir / shard, mmap_mode="r")[int(index)])
        mask = np.asarray(np.load(ds_dir / mask_file(shard), mmap_mode="r")[int(index)])
        tiles += [img, overlay(img, mask, rgb)]
    canvas = _montage(tiles, int(plan["patch_px"].iloc[0]))
    Image.fromarray(canvas).save(path, format="PNG")
    return path


def pixel_chart(ds_dir: Path, names: list[str], path: Path) -> Path:
    """Bar chart of annotated pixels per class and split (from stats.json `targets`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = json.loads((ds_dir / "stats.json").read_text())["targets"]
    by_split = targets["pixels_by_split"]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    width = 0.8 / len(SPLITS)
    for k, s in enumerate(SPLITS):
        vals = [by_split.get(s, {}).get(n, 0) for n in names]
        ax.bar(np.arange(len(names)) + k * width, vals, width, label=s)
    ax.set_xticks(np.arange(len(names)) + width * (len(SPLITS) - 1) / 2, names)
    ax.set_ylabel("annotated pixels")
    ax.set_title(f"class pixels per split ({targets['ignored_pixels']} ignored)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
