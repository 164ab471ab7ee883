"""A harder synthetic tile set for the toy-size AutoML run: H&E-like tiles in related groups.

Three classes differ only in the size, density and elongation of their purple "nuclei" on a pink
stroma texture, with overlapping ranges; each group (an "original image") has its own stain
shift and blur, and its tiles are flips/rotations/crops of one larger field, like LC25000. A model
must learn shape and density, not colour, and a split that ignores the groups leaks.

    python benchmarks/synthetic_tiles.py <out folder>   (writes images.csv + PNGs)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

CLASSES = {  # name: (nuclei per 64x64 field, radius px, elongation)
    "dense_small": (34, 2.6, 1.2),
    "sparse_large": (16, 4.0, 1.3),
    "elongated": (22, 3.2, 2.4),
}


def _field(rng: np.random.Generator, side: int, count: float, radius: float, elong: float):
    """One RGB field: stroma texture plus `count` nuclei per 64x64 of the given shape."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    stroma = 0.5 + 0.5 * np.sin(xx * rng.uniform(0.1, 0.3) + yy * rng.uniform(0.1, 0.3))
    img = np.stack([225 - 25 * stroma, 170 - 35 * stroma, 200 - 20 * stroma], -1)
    n = rng.poisson(count * (side / 64) ** 2 * rng.uniform(0.75, 1.25))
    for _ in range(n):
        cy, cx = rng.uniform(0, side, 2)
        r = radius * rng.uniform(0.7, 1.3)
        th = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / (r * elong)
        v = (-dx * np.sin(th) + dy * np.cos(th)) / r
        m = np.clip(1.5 - (u * u + v * v), 0, 1)[..., None]
        img = img * (1 - m) + np.array([90, 50, 140]) * m
    return img


def write_tiles(out: Path, groups_per_class: int = 16, tiles_per_group: int = 8,
                side: int = 64, seed: int = 0) -> Path:  # fmt: skip
    """Write the tiles (PNG) and `images.csv` (`path,label,group`) under `out`; return `out`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, (count, radius, elong) in CLASSES.items():
        (out / label).mkdir(exist_ok=True)
        for g in range(groups_per_class):
            field = _field(rng, side * 2, count, radius, elong)
            shift = rng.normal(0, 14, 3)  # the group's stain
            for t in range(tiles_per_group):
                y, x = rng.integers(0, side, 2)
                tile = np.rot90(field[y : y + side, x : x + side], int(rng.integers(0, 4)))
                tile = tile + shift + rng.normal(0, 10, tile.shape)
                name = f"{label}/{label}_{g:03d}_{t:02d}.png"
                Image.fromarray(np.clip(tile, 0, 255).astype(np.uint8)).save(out / name)
                rows.append((name, label, f"{label}_{g:03d}"))
    with (out / "images.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    return out


if __name__ == "__main__":
    print(write_tiles(Path(sys.argv[1])))
