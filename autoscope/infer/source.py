"""Where the engine's tiles come from: the slide reader, the tissue grid and prefetched batches.

The slide engine (`autoscope.slides.reader.open_reader`, `autoscope.slides.parallel.iter_batches`)
is used when it is installed; a small OpenSlide fallback with the same shape keeps the engine
usable on a host that has only torch, numpy and OpenSlide (the GPU benchmark).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from autoscope.errors import UserError

MPP_TOLERANCE = 0.02  # a level within 2 % of the wanted MPP is read as is (no resampling)
MAX_UPSAMPLE = 1.10  # a slide coarser than the model by more than this cannot be used


class SlideError(UserError):
    """A slide the engine cannot run on: unreadable, without MPP, or too coarse for the model."""


class _OpenSlideReader:
    """Minimal `TileReader` over OpenSlide, used when the slide engine's reader is not installed."""

    def __init__(self, path: str, mpp_x: float | None = None) -> None:
        import openslide

        self._slide = openslide.OpenSlide(path)
        self.level_dimensions = list(self._slide.level_dimensions)
        self.level_downsamples = list(self._slide.level_downsamples)
        mpp = mpp_x or self._slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
        self.mpp = float(mpp) if mpp else None

    def read_region(self, x0: int, y0: int, level: int, w: int, h: int) -> np.ndarray:
        rgba = np.asarray(self._slide.read_region((int(x0), int(y0)), level, (int(w), int(h))))
        return np.ascontiguousarray(rgba[..., :3])

    def best_level(self, mpp: float) -> tuple[int, float]:
        best = 0
        for lvl, ds in enumerate(self.level_downsamples):
            if self.mpp * ds <= mpp * (1 + MPP_TOLERANCE):
                best = lvl
        return best, self.mpp * self.level_downsamples[best] / mpp

    def read_patch(self, x0: int, y0: int, mpp: float, patch_px: int) -> np.ndarray:
        level, scale = self.best_level(mpp)
        src_px = patch_px if abs(scale - 1) <= MPP_TOLERANCE else max(1, round(patch_px / scale))
        img = self.read_region(x0, y0, level, src_px, src_px)
        if src_px != patch_px:
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize((patch_px, patch_px), Image.BILINEAR))
        return img

    def thumbnail(self, max_px: int) -> np.ndarray:
        return np.asarray(self._slide.get_thumbnail((max_px, max_px)).convert("RGB"))

    def close(self) -> None:
        self._slide.close()


def open_slide(path: str, mpp_x: float | None = None) -> Any:
    """Open a slide with the slide engine's reader (OpenSlide fallback).

    Raises:
        SlideError: the file cannot be opened as a slide.
    """
    try:
        from autoscope.slides.reader import open_reader
    except ImportError:
        open_reader = _OpenSlideReader
    try:
        return open_reader(str(path), mpp_x=mpp_x)
    except Exception as e:  # noqa: BLE001 - every backend has its own error types
        raise SlideError(f"cannot open slide {path}: {type(e).__name__}: {e}") from None


def check_resolution(reader: Any, mpp: float, path: str) -> float:
    """Return the slide's level-0 MPP if the model's `mpp` can be read from it.

    Raises:
        SlideError: the slide has no MPP, or is coarser than the model needs.
    """
    if not reader.mpp:
        raise SlideError(f"{path}: slide has no MPP (set it in the registry or pass mpp_x)")
    if reader.mpp > mpp * MAX_UPSAMPLE:
        raise SlideError(
            f"{path}: slide resolution {reader.mpp:.3f} um/px is coarser than the model's "
            f"{mpp:.3f} um/px (upsampling is not supported)"
        )
    return float(reader.mpp)


def default_tissue(rgb: np.ndarray) -> np.ndarray:
    """Numpy-only tissue mask (saturation and brightness), used when no detector is given."""
    x = rgb.astype(np.float32) / 255.0
    mx, mn = x.max(axis=2), x.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1e-6)
    return (sat > 0.07) & (mn < 0.92)


def tissue_grid(
    reader: Any,
    *,
    mpp: float,
    patch_px: int,
    stride_px: int,
    tissue: Callable[[np.ndarray], np.ndarray] | None,
    min_tissue: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Level-0 top-left corners of the grid tiles that hold tissue (`samplers.foreground_grid`).

    Returns:
        (coords int64 [N, 2], thumbnail uint8 [h, w, 3], thumbnail downsample in level-0 px per px).
    """
    from autoscope.slides.samplers import foreground_grid

    width0, height0 = reader.level_dimensions[0]
    tile0, step0 = level0_px(reader.mpp, mpp, patch_px), level0_px(reader.mpp, mpp, stride_px)
    mask_ds = max(1.0, step0 / 4)  # at least ~4 mask px per grid step
    thumb = reader.thumbnail(max(64, math.ceil(max(width0, height0) / mask_ds)))
    ds = max(width0 / thumb.shape[1], height0 / thumb.shape[0])
    mask = np.asarray((tissue or default_tissue)(thumb), bool)
    coords = foreground_grid(
        mask, ds, tile0, step0, min_tissue, width=int(width0), height=int(height0)
    )
    return np.asarray(coords, np.int64), thumb, ds


def level0_px(slide_mpp: float, mpp: float, px: int) -> int:
    """A length of `px` pixels at `mpp`, in whole level-0 pixels of a `slide_mpp` slide."""
    return max(1, round(px * mpp / slide_mpp))


def _thread_batches(
    path: str,
    coords: np.ndarray,
    mpp: float,
    patch_px: int,
    batch_size: int,
    workers: int,
    queue_depth: int,
    mpp_x: float | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fallback prefetcher: reader threads (OpenSlide releases the GIL while decoding)."""
    reader = open_slide(path, mpp_x)

    def read(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(chunk), patch_px, patch_px, 3), np.uint8)
        for i, (x, y) in enumerate(chunk):
            out[i] = reader.read_patch(int(x), int(y), mpp, patch_px)
        return out, chunk

    chunks = [coords[i : i + batch_size] for i in range(0, len(coords), batch_size)]
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            pending: deque = deque()
            for chunk in chunks:
                pending.append(pool.submit(read, chunk))
                if len(pending) > queue_depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        reader.close()


def iter_tiles(
    path: str,
    coords: np.ndarray,
    *,
    mpp: float,
    patch_px: int,
    batch_size: int,
    workers: int,
    queue_depth: int,
    mpp_x: float | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches `(uint8 [B, patch_px, patch_px, 3], int64 [B, 2])` read ahead by workers."""
    try:
        import autoscope.slides.reader  # noqa: F401 - the workers need it (openslide, imagecodecs)
        from autoscope.slides.parallel import iter_batches
    except ImportError:
        return _thread_batches(path, coords, mpp, patch_px, batch_size, workers, queue_depth, mpp_x)
    return iter_batches(path, coords, mpp, patch_px, batch_size, workers, queue_depth, mpp_x=mpp_x)
