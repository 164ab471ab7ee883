"""The one tile reader (`TileReader`): pixels of a slide at a level or at a target mpp.

Open slides through `autoscope.slides.reader.open_reader`, which also reads the formats OpenSlide
refuses (OME-Zarr, OME-TIFF, DICOM) with the same API.

OpenSlide is the truth for what a slide is (levels, sizes, mpp, vendor). For Aperio SVS and
generic tiled TIFF files whose levels are stored as plain JPEG tiles, pixels come from the fast
path in :mod:`autoscope.slides.tiff_fast` (stored tile bytes + libjpeg-turbo), which matches
OpenSlide's ``read_region`` pixel for pixel (tests check it); every other level or format goes
through OpenSlide, composited over the background colour like OpenSlide's own thumbnails.

A level-0 point maps to the nearest level pixel, ``floor(x0 / downsample + 0.5)``. Where that is
fractional OpenSlide blends neighbouring pixels (sub-pixel offsets), so reads compare equal only
where ``x0 / downsample`` is whole; nearest (not floor) keeps Aperio's near-integer downsamples
(e.g. 4.000345) on the intended pixel.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import openslide.lowlevel
from PIL import Image

from autoscope.errors import UserError
from autoscope.slides.tiff_fast import JpegTileLevel, TileCache, page_is_supported
from autoscope.slides.units import MPP_TOLERANCE

log = logging.getLogger(__name__)

FAST_VENDORS = ("aperio", "generic-tiff")  # tiles are plain JPEG in the TIFF pages, no overlaps
CHECK_MAX_DIFF = 2  # the open-time self-check's allowed decoder difference vs OpenSlide
ARGB_RAW_MODE = "BGRX" if sys.byteorder == "little" else "XRGB"  # native uint32 ARGB in memory


class TileReader:
    """A slide handle that reads RGB uint8 regions, patches and thumbnails.

    Not thread-safe (one tile cache, one OpenSlide handle): use one reader per thread or process,
    as :func:`autoscope.slides.parallel.iter_batches` does.

    Args:
        path: The slide file.
        mpp_x: Level-0 microns per pixel, overriding the file's (None: from the file).
        cache_mb: Budget of the decoded-tile cache of this handle.
        backend: ``"auto"`` (fast path where possible) or ``"openslide"`` (always OpenSlide).

    Raises:
        UserError: The file is missing or OpenSlide cannot open it.
    """

    def __init__(
        self,
        path: str | Path,
        mpp_x: float | None = None,
        *,
        cache_mb: int = 64,
        backend: str = "auto",
    ) -> None:
        self.path = str(path)
        if backend not in ("auto", "openslide"):
            raise UserError(f"reader backend {backend!r} is not one of auto, openslide")
        if not os.path.isfile(self.path):
            raise UserError(f"{self.path}: slide file not found")
        try:
            self.slide = openslide.OpenSlide(self.path)
        except (openslide.OpenSlideError, OSError) as err:
            raise UserError(f"{self.path}: OpenSlide cannot open it ({err})") from None
        props = self.slide.properties
        self.vendor = props.get("openslide.vendor", "")
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (int(w), int(h)) for w, h in self.slide.level_dimensions
        )
        self.level_downsamples: tuple[float, ...] = tuple(
            float(d) for d in self.slide.level_downsamples
        )
        file_mpp = props.get("openslide.mpp-x")
        self.mpp: float | None = float(mpp_x) if mpp_x else (float(file_mpp) if file_mpp else None)
        bg = props.get("openslide.background-color", "FFFFFF")
        self.background = np.array([int(bg[i : i + 2], 16) for i in (0, 2, 4)], np.uint8)
        self.cache = TileCache(cache_mb * 2**20)
        self._best: dict[float, tuple[int, float]] = {}  # best_level per target mpp
        self._fd: int | None = None
        self._closed = False
        self.fast_levels: list[JpegTileLevel | None] = [None] * len(self.level_dimensions)
        if backend == "auto" and self.vendor in FAST_VENDORS:
            self._open_fast()

    def _open_fast(self) -> None:
        """Map OpenSlide levels to JPEG-tiled TIFF pages by size; check one tile vs OpenSlide."""
        import tifffile

        try:
            with tifffile.TiffFile(self.path) as tif:
                pages = [p for p in tif.pages if getattr(p, "is_tiled", False)]
                self._fd = os.open(self.path, os.O_RDONLY)
                for level, (w, h) in enumerate(self.level_dimensions):
                    match = [p for p in pages if (p.imagewidth, p.imagelength) == (w, h)]
                    if len(match) == 1 and page_is_supported(match[0]):
                        fast = JpegTileLevel(self._fd, match[0], level, self.cache)
                        self.fast_levels[level] = fast
        except Exception as err:  # anything odd in the TIFF structure: OpenSlide reads it all
            log.info("%s: fast path off (%s)", self.path, err)
            self.fast_levels = [None] * len(self.level_dimensions)
        # one encoder wrote every page: checking the smallest fast level (one cheap tile) against
        # OpenSlide catches colour-convention surprises without slowing down opening
        checked = [i for i, f in enumerate(self.fast_levels) if f is not None][-1:]
        for level in checked:
            if not self._agrees(level, self.fast_levels[level]):
                log.warning("%s: fast path differs from OpenSlide; not used", self.path)
                self.fast_levels = [None] * len(self.level_dimensions)
        self.cache.clear()
        if self._fd is not None and not any(self.fast_levels):
            os.close(self._fd)
            self._fd = None
        elif self._fd is not None:  # closed by close(), or when the reader is collected
            self._fd_finalizer = weakref.finalize(self, os.close, self._fd)

    def _agrees(self, level: int, fast: JpegTileLevel) -> bool:
        """Whether the fast path and OpenSlide agree on this level's middle tile."""
        ds = self.level_downsamples[level]
        tx, ty = (fast.width // fast.tile_w) // 2, (fast.height // fast.tile_h) // 2
        if ds != int(ds):  # OpenSlide blends sub-pixel offsets here: compare at the origin
            tx = ty = 0
        w, h = min(fast.tile_w, fast.width), min(fast.tile_h, fast.height)
        x, y = tx * fast.tile_w, ty * fast.tile_h
        try:
            mine = fast.read(x, y, w, h)
        except Exception:  # noqa: BLE001 - any decode failure means: not for the fast path
            return False
        ref = self._read_openslide(round(x * ds), round(y * ds), level, w, h)
        return int(np.abs(mine.astype(np.int16) - ref).max()) <= CHECK_MAX_DIFF

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    def level_mpp(self, level: int) -> float | None:
        """Microns per pixel at ``level`` (None when the slide has no mpp)."""
        return None if self.mpp is None else self.mpp * self.level_downsamples[level]

    def read_region(
        self, x0: int, y0: int, level: int, w: int, h: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Read a (h, w, 3) uint8 region whose top-left is (x0, y0) in level-0 pixels.

        Args:
            x0: Left edge in level-0 pixels (like OpenSlide).
            y0: Top edge in level-0 pixels.
            level: Pyramid level.
            w: Width in pixels of ``level``.
            h: Height in pixels of ``level``.
            out: Optional (h, w, 3) uint8 array to fill and return.
        """
        if not 0 <= level < self.level_count:
            raise UserError(f"{self.path}: level {level} not in 0..{self.level_count - 1}")
        fast = self.fast_levels[level]
        if fast is not None:
            ds = self.level_downsamples[level]
            return fast.read(math.floor(x0 / ds + 0.5), math.floor(y0 / ds + 0.5), w, h, out)
        rgb = self._read_openslide(x0, y0, level, w, h)
        if out is None:
            return rgb
        out[...] = rgb
        return out

    def _read_level(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        """Read a region whose top-left is given in ``level`` pixels."""
        fast = self.fast_levels[level]
        if fast is not None:
            return fast.read(x, y, w, h)
        ds = self.level_downsamples[level]
        return self._read_openslide(round(x * ds), round(y * ds), level, w, h)

    def _read_openslide(self, x0: int, y0: int, level: int, w: int, h: int) -> np.ndarray:
        """OpenSlide read_region as RGB, transparent areas composited over the background.

        Calls libopenslide's ``openslide_read_region`` into a numpy buffer (premultiplied ARGB)
        and lets PIL's C unpacker drop alpha: one pass fewer than ``read_region().convert()``.
        """
        w, h = int(w), int(h)
        if w <= 0 or h <= 0:
            return np.zeros((max(h, 0), max(w, 0), 3), np.uint8)
        argb = np.empty((h, w), np.uint32)
        ptr = argb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32))
        openslide.lowlevel._read_region(self.slide._osr, ptr, int(x0), int(y0), level, w, h)
        rgb = np.array(Image.frombuffer("RGB", (w, h), argb, "raw", ARGB_RAW_MODE, 0, 1))
        if argb.min() >= 0xFF000000:  # opaque everywhere (the usual case)
            return rgb
        alpha = (argb >> 24).astype(np.uint16)[..., None]  # premultiplied: add bg * (1 - a)
        bg = (self.background.astype(np.uint16) * (255 - alpha) + 127) // 255
        return (rgb + bg).astype(np.uint8)

    def best_level(self, mpp: float) -> tuple[int, float]:
        """The level to read for a target mpp, and the scale still to apply.

        Picks the coarsest level that is not coarser than the target (within 1 %), so patches are
        only ever reduced; a level within 1 % of the target gives scale 1.0 (no resampling).

        Returns:
            ``(level, scale)`` where ``scale = mpp / level_mpp`` (> 1 reduces, < 1 enlarges).

        Raises:
            UserError: The slide has no mpp (set one with the recipe's ``mpp_x`` override).
        """
        if self.mpp is None:
            raise UserError(f"{self.path}: no mpp in the file; give mpp_x (slides metadata/recipe)")
        if mpp in self._best:
            return self._best[mpp]
        if mpp <= 0:
            raise UserError(f"target mpp must be positive, got {mpp}")
        limit = mpp * (1 + MPP_TOLERANCE)
        fine = [i for i in range(self.level_count) if self.mpp * self.level_downsamples[i] <= limit]
        level = max(fine, key=lambda i: self.level_downsamples[i], default=0)
        scale = mpp / (self.mpp * self.level_downsamples[level])
        self._best[mpp] = (level, 1.0 if abs(scale - 1.0) <= MPP_TOLERANCE else scale)
        return self._best[mpp]

    def read_patch(
        self, x0: int, y0: int, mpp: float, patch_px: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Read a (patch_px, patch_px, 3) patch at ``mpp`` whose top-left is (x0, y0) level-0 px.

        Resamples (PIL area filter on reduction, bilinear on enlargement) only when no level
        matches the target mpp within 1 %.
        """
        level, scale = self.best_level(mpp)
        if scale == 1.0:
            return self.read_region(x0, y0, level, patch_px, patch_px, out)
        src_px = math.ceil(patch_px * scale) + 1
        src = self.read_region(x0, y0, level, src_px, src_px)
        img = Image.fromarray(src)
        k = round(scale)
        if abs(scale - k) <= 1e-6 and k >= 2:
            res = np.asarray(img.crop((0, 0, patch_px * k, patch_px * k)).reduce(k))
        else:
            method = Image.Resampling.BOX if scale > 1 else Image.Resampling.BILINEAR
            box = (0.0, 0.0, patch_px * scale, patch_px * scale)
            res = np.asarray(img.resize((patch_px, patch_px), method, box=box))
        if out is None:
            return np.array(res)
        out[...] = res
        return out

    def thumbnail(self, max_px: int) -> np.ndarray:
        """The whole slide as RGB uint8 whose longer side is ``max_px`` (or less for tiny slides).

        Reads the smallest level that is still at least as large, band by band (bounded memory),
        and reduces each band with a PIL area filter.
        """
        w0, h0 = self.level_dimensions[0]
        ds = max(w0, h0) / max_px if max(w0, h0) > max_px else 1.0
        ow, oh = max(1, round(w0 / ds)), max(1, round(h0 / ds))
        level = max(
            (i for i in range(self.level_count) if self.level_downsamples[i] <= ds + 1e-9),
            key=lambda i: self.level_downsamples[i],
            default=0,
        )
        lw, lh = self.level_dimensions[level]
        fy = lh / oh
        out = np.empty((oh, ow, 3), np.uint8)
        band = max(1, int(2**22 // max(1, lw) / fy))  # output rows per band: ~12 MB read at once
        for r0 in range(0, oh, band):
            r1 = min(oh, r0 + band)
            s0, s1 = math.floor(r0 * fy), min(lh, math.ceil(r1 * fy))
            src = self._read_level(0, s0, level, lw, s1 - s0)
            img = Image.fromarray(src)
            box = (0.0, r0 * fy - s0, float(lw), r1 * fy - s0)
            out[r0:r1] = np.asarray(img.resize((ow, r1 - r0), Image.Resampling.BOX, box=box))
        return out

    def close(self) -> None:
        """Release the OpenSlide handle, the file descriptor and the tile cache (idempotent)."""
        self.cache.clear()
        if not self._closed:
            self._closed = True
            self.slide.close()
        if self._fd is not None:
            self._fd_finalizer()  # closes the descriptor once
            self._fd = None

    def __enter__(self) -> TileReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
