"""Deep-zoom (DZI) tiles of registered slides, read through the project's tile reader.

DZI level `L` of a `w x h` slide is the slide reduced by `2 ** (max_level - L)`, where
`max_level = ceil(log2(max(w, h)))`; its tiles are `tile_px` squares (the last row and column
smaller). A tile is read from the finest pyramid level not finer than it needs
(`autoscope.slides.reader.open_reader`), reduced with an area filter, and JPEG-encoded. Encoded
tiles stay in a byte-bounded LRU (`TileCache`), open readers in a small LRU of their own.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from autoscope.slides.tiff_fast import TileCache


@dataclass(frozen=True)
class SlideGeometry:
    """What the viewer needs of a slide: level-0 size and microns per pixel."""

    width_px: int
    height_px: int
    mpp: float | None

    @property
    def max_level(self) -> int:
        """The finest DZI level (level 0 of the slide)."""
        return max(0, math.ceil(math.log2(max(self.width_px, self.height_px, 1))))

    def level_size(self, level: int) -> tuple[int, int]:
        """`(width, height)` in pixels of DZI `level`."""
        s = 2 ** (self.max_level - level)
        return max(1, math.ceil(self.width_px / s)), max(1, math.ceil(self.height_px / s))


def dzi_xml(geo: SlideGeometry, tile_px: int, fmt: str = "jpeg") -> str:
    """The `.dzi` descriptor of a slide (no overlap)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
        f'Format="{fmt}" Overlap="0" TileSize="{tile_px}">'
        f'<Size Width="{geo.width_px}" Height="{geo.height_px}"/></Image>'
    )


def tile_box(
    geo: SlideGeometry, level: int, col: int, row: int, tile_px: int
) -> tuple[int, int, int, int, int] | None:
    """Level-0 `(x0, y0, w0, h0)` and the scale of a DZI tile, or None when it does not exist."""
    if not 0 <= level <= geo.max_level or col < 0 or row < 0:
        return None
    lw, lh = geo.level_size(level)
    x, y = col * tile_px, row * tile_px
    if x >= lw or y >= lh:
        return None
    s = 2 ** (geo.max_level - level)
    tw, th = min(tile_px, lw - x), min(tile_px, lh - y)
    return x * s, y * s, tw * s, th * s, s


def encode(rgb: np.ndarray, fmt: str = "JPEG", quality: int = 85) -> bytes:
    """An RGB(A) array as JPEG or PNG bytes."""
    buf = io.BytesIO()
    img = Image.fromarray(rgb)
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _bytes(arr: np.ndarray) -> bytes:
    """The bytes an entry views (stored with `np.frombuffer`: no copy), else a copy."""
    base = arr.base
    return base if isinstance(base, bytes) and len(base) == arr.nbytes else arr.tobytes()


class ByteLRU:
    """A thread-safe byte-bounded LRU of encoded tiles (the reader's `TileCache` underneath)."""

    def __init__(self, max_bytes: int) -> None:
        self._cache = TileCache(max_bytes)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        """The cached bytes of `key` (None: not cached)."""
        with self._lock:
            hit = self._cache.get(key)  # type: ignore[arg-type]
        return None if hit is None else _bytes(hit)

    def get_or_make(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """The cached bytes of `key`, made (outside the lock) and stored when missing."""
        with self._lock:
            hit = self._cache.get(key)  # type: ignore[arg-type]
        if hit is not None:
            return _bytes(hit)
        data = make()
        with self._lock:
            self._cache.put(key, np.frombuffer(data, np.uint8))  # type: ignore[arg-type]
        return data

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._cache.clear()


class ReaderPool:
    """Open slide readers by slide id (LRU), one lock each (a reader is not thread-safe)."""

    def __init__(self, opener: Callable[[str], Any], size: int = 8) -> None:
        self._opener = opener
        self._size = max(1, size)
        self._readers: OrderedDict[str, tuple[Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def use(self, slide_id: str, fn: Callable[[Any], Any]) -> Any:
        """Run `fn(reader)` with the slide's reader held (opened on first use)."""
        with self._lock:
            entry = self._readers.get(slide_id)
            if entry is not None:
                self._readers.move_to_end(slide_id)
        if entry is None:
            entry = (self._opener(slide_id), threading.Lock())
            with self._lock:
                self._readers[slide_id] = entry
                while len(self._readers) > self._size:
                    _, (old, old_lock) = self._readers.popitem(last=False)
                    with old_lock:
                        old.close()
        reader, lock = entry
        with lock:
            return fn(reader)

    def close(self) -> None:
        """Close every reader."""
        with self._lock:
            for reader, lock in self._readers.values():
                with lock:
                    reader.close()
            self._readers.clear()


def read_tile(reader: Any, box: tuple[int, int, int, int, int], tile_px: int) -> np.ndarray:
    """The RGB pixels of a DZI tile (`tile_box`) from a tile reader."""
    x0, y0, w0, h0, s = box
    downs = reader.level_downsamples
    level = max(
        (i for i in range(len(downs)) if downs[i] <= s * 1.01), key=lambda i: downs[i], default=0
    )
    ds = downs[level]
    lw, lh = reader.level_dimensions[level]
    rw = max(1, min(math.ceil(w0 / ds), lw - math.floor(x0 / ds + 0.5)))
    rh = max(1, min(math.ceil(h0 / ds), lh - math.floor(y0 / ds + 0.5)))
    rgb = reader.read_region(x0, y0, level, rw, rh)
    tw, th = max(1, round(w0 / s)), max(1, round(h0 / s))
    if rgb.shape[1] == tw and rgb.shape[0] == th:
        return rgb
    img = Image.fromarray(rgb)
    return np.asarray(img.resize((tw, th), Image.Resampling.BOX))


class TileServer:
    """DZI tiles of registered slides: descriptor, JPEG tiles, cached.

    Args:
        opener: opens a slide's reader by slide id (registered slides only).
        tile_px: DZI tile side.
        quality: JPEG quality.
        cache_mb: LRU budget of encoded tiles.
        readers: open readers kept.
    """

    def __init__(
        self,
        opener: Callable[[str], Any],
        tile_px: int = 256,
        quality: int = 85,
        cache_mb: int = 256,
        readers: int = 8,
    ) -> None:
        self.tile_px = tile_px
        self.quality = quality
        self.cache = ByteLRU(cache_mb * 2**20)
        self.pool = ReaderPool(opener, readers)

    def tile(self, slide_id: str, geo: SlideGeometry, level: int, col: int, row: int) -> bytes:
        """JPEG bytes of one tile (KeyError when the tile does not exist)."""
        box = tile_box(geo, level, col, row, self.tile_px)
        if box is None:
            raise KeyError(f"no tile {level}/{col}_{row}")

        def make() -> bytes:
            rgb = self.pool.use(slide_id, lambda r: read_tile(r, box, self.tile_px))
            return encode(rgb, "JPEG", self.quality)

        return self.cache.get_or_make(("slide", slide_id, level, col, row), make)

    def cached(self, slide_id: str, level: int, col: int, row: int) -> bytes | None:
        """A tile's bytes when the cache holds them (served without a worker thread)."""
        return self.cache.get(("slide", slide_id, level, col, row))
