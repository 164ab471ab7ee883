"""Class maps as pictures: the heatmap PNG over a thumbnail and the pyramidal TIFF overlay."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HEATMAP_ALPHA = 0.6  # strongest overlay opacity (probability 1) so tissue stays visible beneath
OVERLAY_MIN_PX = 1024  # the TIFF overlay's level 0 is at least this wide (>= 2 pyramid levels)
OVERLAY_TILE_PX = 256  # TIFF tile side
OVERLAY_MAX_UPSCALE = 32  # overlay pixels per grid step at most


def hex_rgb(color: str | Sequence[int] | None, index: int = 0) -> tuple[int, int, int]:
    """`#rrggbb` (or an RGB triple) -> (r, g, b); None -> a tab10 colour by class index."""
    if color is None:
        tab10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
        color = tab10[index % len(tab10)]
    if isinstance(color, str):
        c = color.lstrip("#")
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
    r, g, b = (int(v) for v in color)
    return r, g, b


def class_colors(classes: Sequence[dict[str, Any]]) -> np.ndarray:
    """uint8 `[C, 3]` colours of the classes."""
    return np.array([hex_rgb(c.get("color"), i) for i, c in enumerate(classes)], np.uint8)


def grid_maps(pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Class index (-1 = no tile) and top probability per grid cell, `[ny, nx]` each."""
    width0, height0 = pred.level_dimensions[0]
    nx, ny = math.ceil(width0 / pred.step0_px), math.ceil(height0 / pred.step0_px)
    idx = np.full((ny, nx), -1, np.int16)
    prob = np.zeros((ny, nx), np.float32)
    if len(pred.coords):
        gx = np.clip(np.round(pred.coords[:, 0] / pred.step0_px).astype(int), 0, nx - 1)
        gy = np.clip(np.round(pred.coords[:, 1] / pred.step0_px).astype(int), 0, ny - 1)
        idx[gy, gx] = pred.probs.argmax(1)
        prob[gy, gx] = pred.probs.max(1)
    return idx, prob


def overlay_rgba(idx: np.ndarray, prob: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """RGBA map: class colour, alpha = probability (0 where no tile was predicted)."""
    rgba = np.zeros((*idx.shape, 4), np.uint8)
    has = idx >= 0
    rgba[has, :3] = colors[idx[has]]
    rgba[has, 3] = np.round(prob[has] * 255).astype(np.uint8)
    return rgba


def _sample(rgba: np.ndarray, shape: tuple[int, int], px0: float, step0: float) -> np.ndarray:
    """Nearest-neighbour resample of a grid map onto `shape` pixels of `px0` level-0 px each."""
    ys = np.minimum(((np.arange(shape[0]) + 0.5) * px0 / step0).astype(int), rgba.shape[0] - 1)
    xs = np.minimum(((np.arange(shape[1]) + 0.5) * px0 / step0).astype(int), rgba.shape[1] - 1)
    return rgba[ys][:, xs]


def heatmap_image(pred: Any, rgba: np.ndarray) -> np.ndarray:
    """The thumbnail with class colours blended in, opacity by probability (uint8 RGB)."""
    thumb = pred.thumbnail
    over = _sample(rgba, thumb.shape[:2], pred.thumb_downsample, pred.step0_px)
    a = over[..., 3:4].astype(np.float32) / 255.0 * HEATMAP_ALPHA
    out = thumb.astype(np.float32) * (1 - a) + over[..., :3].astype(np.float32) * a
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_png(img: np.ndarray, path: Path) -> None:
    """Save an RGB(A) array as PNG (the caller renames it into place)."""
    from PIL import Image

    Image.fromarray(img).save(path, format="PNG")


def write_overlay_tiff(pred: Any, rgba: np.ndarray, path: Path) -> dict[str, Any]:
    """Write the RGBA class map as a pyramidal tiled TIFF that OpenSlide and QuPath open.

    Levels are top-level pages, largest first, the lower ones with NewSubfileType=1, each with
    its resolution tags (pixels per cm from the MPP), so it overlays the slide at its true scale.

    Returns:
        `{"mpp": level-0 MPP, "levels": [[w, h], ...]}` of the written file.
    """
    import tifffile

    width0, height0 = pred.level_dimensions[0]
    up = min(OVERLAY_MAX_UPSCALE, max(1, math.ceil(OVERLAY_MIN_PX / max(rgba.shape[:2]))))
    px0 = pred.step0_px / up  # level-0 slide px per overlay px
    shape = (max(1, math.ceil(height0 / px0)), max(1, math.ceil(width0 / px0)))
    base = _sample(rgba, shape, px0, pred.step0_px)
    mpp = px0 * pred.slide_mpp
    levels = [base]
    while max(levels[-1].shape[:2]) > OVERLAY_TILE_PX or len(levels) < 2:
        levels.append(np.ascontiguousarray(levels[-1][::2, ::2]))
    with tifffile.TiffWriter(path, bigtiff=base.nbytes > 2**31) as tif:
        for k, img in enumerate(levels):
            ds = base.shape[1] / img.shape[1]
            res = 1e4 / (mpp * ds)  # pixels per centimetre
            tif.write(
                img,
                photometric="rgb",
                extrasamples=["unassalpha"],
                compression="zlib",
                tile=(OVERLAY_TILE_PX, OVERLAY_TILE_PX),
                subfiletype=0 if k == 0 else 1,
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                metadata=None,
                software="autoscope",
            )
    return {"mpp": mpp, "levels": [[int(i.shape[1]), int(i.shape[0])] for i in levels]}
