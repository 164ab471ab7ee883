"""The tissue detector's colour rules as a lookup table, and the small binary morphology it uses."""

from __future__ import annotations

import functools

import numpy as np

WEAK, STRONG, PEN, DARK = 1, 2, 4, 8  # colour-table flags


@functools.lru_cache(maxsize=8)
def colour_table(rules: tuple[float, ...]) -> np.ndarray:
    """Flags for every 6-bit RGB cell, evaluated at the cell centres (built once per process)."""
    (
        min_sat,
        edge_sat,
        max_bright,
        min_od,
        red_hue,
        red_sat,
        green_sat,
        blue_sat,
        black_v,
        dark_v,
    ) = rules
    q = (np.arange(64, dtype=np.float32) * 4 + 1.5)[:, None, None]
    r, g, b = np.broadcast_arrays(q, q.reshape(1, 64, 1), q.reshape(1, 1, 64))
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    od = -np.log10((np.stack([r, g, b]) + 1.0) / 256.0).sum(axis=0)
    base = (od > min_od) & (mn < 255 * max_bright)
    d = np.maximum(mx - mn, 1e-6)
    hue = np.where(
        mx == r, ((g - b) / d) % 6.0, np.where(mx == g, (b - r) / d + 2.0, (r - g) / d + 4.0)
    )
    hue /= 6.0  # 0 red, 1/3 green, 2/3 blue
    red = (np.minimum(hue, 1.0 - hue) < red_hue) & (sat > red_sat)
    green = (hue > 0.15) & (hue < 0.55) & (sat > green_sat)
    blue = (hue >= 0.55) & (hue < 0.655) & (sat > blue_sat)
    black = (mx < 255 * black_v) & (sat < 0.5)
    flags = np.where(base & (sat > min_sat), WEAK, 0)
    flags |= np.where(base & (sat > edge_sat), STRONG, 0)
    flags |= np.where(red | green | blue | black, PEN, 0)
    flags |= np.where(mx < 255 * dark_v, DARK, 0)
    table = flags.astype(np.uint8).ravel()
    table.flags.writeable = False
    return table


def small_parts(m: np.ndarray, min_px: int) -> np.ndarray:
    """Pixels of 8-connected components of ``m`` smaller than ``min_px``."""
    from scipy import ndimage

    labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros_like(m)
    small = np.bincount(labels.ravel()) < min_px
    small[0] = False
    return small[labels] if small.any() else np.zeros_like(m)


def dilate(m: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary dilation by a small symmetric footprint (shifted ORs; outside counts as False)."""
    out = m.copy()
    ry, rx = footprint.shape[0] // 2, footprint.shape[1] // 2
    h, w = m.shape
    for dy, dx in zip(*np.nonzero(footprint), strict=True):
        dy, dx = int(dy) - ry, int(dx) - rx
        if (dy or dx) and abs(dy) < h and abs(dx) < w:
            out[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] |= m[
                max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)
            ]
    return out


def disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius
