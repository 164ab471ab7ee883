"""Fast path for JPEG-tiled TIFF pages: stored tile bytes decoded by libjpeg-turbo.

The TIFF structure (tile offsets, byte counts, JPEG tables, photometric) is parsed once with
tifffile; every tile is then read with one ``os.pread`` and decoded with
``imagecodecs.jpeg8_decode``, straight into the caller's array when a read is one whole tile.
Unaligned reads are cut from decoded tiles kept in a small LRU cache shared by a handle's levels.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Any

import imagecodecs
import numpy as np

JPEG = 7  # TIFF Compression tag value of "new-style" JPEG; old-style (6) goes to OpenSlide
PHOTOMETRIC_RGB = 2  # Aperio writes RGB components in the JPEG stream (no colour transform)
PHOTOMETRIC_YCBCR = 6  # the usual JPEG-in-TIFF: YCbCr 4:2:0 or 4:4:4
JCS_RGB = 2  # libjpeg J_COLOR_SPACE values, as imagecodecs passes them through
JCS_YCBCR = 3
ALIGN_OFFSET = 16  # decode targets start this far past a 64-byte boundary (see empty_rgb)
# Adobe APP14 marker with transform 0: tells a JPEG decoder the 3 components are RGB, not YCbCr
# (Aperio's RGB tiles carry no marker; libjpeg guesses YCbCr from their component ids)
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def empty_rgb(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint8 array whose data start 16 bytes past a 64-byte boundary.

    libjpeg-turbo's colour conversion wrote into 32-byte aligned outputs about 30 % slower than
    into outputs 8-24 bytes off that alignment (measured on this project's machines: the output
    rows alias the decoder's own aligned row buffers). malloc's large blocks happen to sit at
    page + 16; this makes it so for every decode target instead of leaving it to chance.
    """
    n = int(np.prod(shape))
    raw = np.empty(n + 64, np.uint8)
    off = (ALIGN_OFFSET - raw.ctypes.data) % 64
    return raw[off : off + n].reshape(shape)


def page_is_supported(page: Any) -> bool:
    """Whether a tifffile page can be read by :class:`JpegTileLevel` (else use OpenSlide)."""
    try:
        return bool(
            page.is_tiled
            and page.compression == JPEG
            and page.photometric in (PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR)
            and page.samplesperpixel == 3
            and page.bitspersample == 8
            and page.planarconfig == 1
            and page.imagedepth == 1
            and len(page.dataoffsets)
            == math.ceil(page.imagewidth / page.tilewidth)
            * math.ceil(page.imagelength / page.tilelength)
        )
    except (AttributeError, TypeError, ValueError):
        return False


class TileCache:
    """LRU cache of decoded tiles, keyed by (level, tile_x, tile_y); bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._tiles: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    def get(self, key: tuple[int, int, int]) -> np.ndarray | None:
        """The cached tile for ``key`` (marked most recently used), or None."""
        tile = self._tiles.get(key)
        if tile is not None:
            self._tiles.move_to_end(key)
        return tile

    def put(self, key: tuple[int, int, int], tile: np.ndarray) -> None:
        """Store a tile, evicting the least recently used ones beyond the byte budget."""
        self._tiles[key] = tile
        self.nbytes += tile.nbytes
        while self.nbytes > self.max_bytes and len(self._tiles) > 1:
            _, old = self._tiles.popitem(last=False)
            self.nbytes -= old.nbytes

    def clear(self) -> None:
        """Drop every tile."""
        self._tiles.clear()
        self.nbytes = 0


class JpegTileLevel:
    """One pyramid level stored as JPEG tiles in one TIFF page.

    Args:
        fd: An open file descriptor of the TIFF file (owned by the caller).
        page: The tifffile page of this level (see :func:`page_is_supported`).
        level: The level index, used as part of the cache key.
        cache: The handle's tile cache.
    """

    def __init__(self, fd: int, page: Any, level: int, cache: TileCache) -> None:
        self.fd = fd
        self.level = level
        self.cache = cache
        self.width = int(page.imagewidth)
        self.height = int(page.imagelength)
        self.tile_w = int(page.tilewidth)
        self.tile_h = int(page.tilelength)
        self.tiles_x = math.ceil(self.width / self.tile_w)
        self.offsets = [int(o) for o in page.dataoffsets]
        self.counts = [int(c) for c in page.databytecounts]
        tables = page.jpegtables
        self.tables = bytes(tables) if tables is not None else None
        self.colorspace = JCS_RGB if page.photometric == PHOTOMETRIC_RGB else JCS_YCBCR

    def tile_bytes(self, tx: int, ty: int) -> bytes:
        """The stored JPEG stream of tile (tx, ty) (without the shared tables)."""
        i = ty * self.tiles_x + tx
        return os.pread(self.fd, self.counts[i], self.offsets[i])

    def jpeg_stream(self, tx: int, ty: int) -> bytes | None:
        """Tile (tx, ty) as one self-contained JPEG file any decoder reads (None: sparse tile).

        The shared JPEGTables (quantisation and Huffman tables) are merged in, and RGB tiles
        get an Adobe marker that says so, so the result decodes to the same colours as
        :meth:`decode_tile` (e.g. with ``torchvision.io.decode_jpeg`` on a GPU).
        """
        data = self.tile_bytes(tx, ty)
        if not data:
            return None
        head = b"\xff\xd8" + (ADOBE_RGB if self.colorspace == JCS_RGB else b"")
        tables = self.tables[2:-2] if self.tables else b""  # without their SOI and EOI markers
        return head + tables + data[2:]

    def decode_tile(self, tx: int, ty: int, out: np.ndarray | None = None) -> np.ndarray:
        """Decode tile (tx, ty) to a (tile_h, tile_w, 3) uint8 array, into ``out`` if given."""
        i = ty * self.tiles_x + tx
        n = self.counts[i]
        shape = (self.tile_h, self.tile_w, 3)
        if out is None:
            out = empty_rgb(shape)
        if n == 0:  # a sparse (never written) tile: OpenSlide shows it as background
            out[...] = 255
            return out
        data = os.pread(self.fd, n, self.offsets[i])
        try:
            return imagecodecs.jpeg8_decode(
                data, tables=self.tables, colorspace=self.colorspace, outcolorspace=JCS_RGB, out=out
            )
        except (ValueError, RuntimeError, imagecodecs.Jpeg8Error):
            # a tile whose JPEG frame is not the tile size: decode freely and paste (white pad)
            img = imagecodecs.jpeg8_decode(
                data, tables=self.tables, colorspace=self.colorspace, outcolorspace=JCS_RGB
            )
            out[...] = 255
            h, w = min(img.shape[0], shape[0]), min(img.shape[1], shape[1])
            out[:h, :w] = img[:h, :w, :3]
            return out

    def cached_tile(self, tx: int, ty: int) -> np.ndarray:
        """Tile (tx, ty) from the cache, decoding it on a miss."""
        key = (self.level, tx, ty)
        tile = self.cache.get(key)
        if tile is None:
            tile = self.decode_tile(tx, ty)
            self.cache.put(key, tile)
        return tile

    def read(self, x: int, y: int, w: int, h: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read a (h, w, 3) region at level coordinates; outside the level is white.

        Args:
            x: Left edge in this level's pixels (may be negative).
            y: Top edge in this level's pixels (may be negative).
            w: Width in pixels.
            h: Height in pixels.
            out: Optional C-contiguous (h, w, 3) uint8 array to fill.
        """
        tw, th = self.tile_w, self.tile_h
        if (
            w == tw
            and h == th
            and x % tw == 0
            and y % th == 0
            and 0 <= x
            and x + w <= self.width
            and 0 <= y
            and y + h <= self.height
        ):  # one whole tile: decode straight into the result, no cache, no copy
            tx, ty = x // tw, y // th
            tile = self.cache.get((self.level, tx, ty))
            if tile is None:
                if out is None or out.flags.c_contiguous:
                    return self.decode_tile(tx, ty, out)
                out[...] = self.decode_tile(tx, ty)
                return out
            if out is None:
                return tile.copy()
            out[...] = tile
            return out
        if out is None:
            out = np.empty((h, w, 3), np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x0 >= x1 or y0 >= y1:
            out[...] = 255
            return out
        if x0 > x or y0 > y or x1 < x + w or y1 < y + h:
            out[...] = 255  # partly outside the level: pad with background like OpenSlide
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            ty0 = ty * th
            sy0, sy1 = max(y0, ty0), min(y1, ty0 + th)
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                tx0 = tx * tw
                sx0, sx1 = max(x0, tx0), min(x1, tx0 + tw)
                tile = self.cached_tile(tx, ty)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0
                ]
        return out
