"""Patches decoded on the device: stored JPEG tiles -> ``torchvision.io.decode_jpeg`` -> patches.

For a JPEG-tiled TIFF level that the reader's fast path handles and that matches the model's
mpp (no resampling), the host only reads the stored tile bytes (``os.pread``, JPEG tables merged:
:meth:`autoscope.slides.tiff_fast.JpegTileLevel.jpeg_stream`); the tiles are decoded in batches
on the device (nvJPEG on CUDA, libjpeg on the CPU, where the tests run it), kept in a small
cache of device tensors (neighbouring patches share tiles: a tile stays while one of the last
``WINDOW_BATCHES`` batches used it, so along a row-major grid each stored tile is decoded about
once), and the patches are cut on the device with one gather into the uint8
``[B, patch_px, patch_px, 3]`` batch the model takes. Pixels outside the level are white, like
the reader's.

Decoders differ slightly (IDCT and chroma upsampling), so :func:`open_gpu_source` first compares
a few patches with the reader's and returns None (the engine then uses the CPU reader) when they
differ by more than ``CHECK_MEAN_DIFF`` on average or ``CHECK_MAX_DIFF`` anywhere: colour
convention mix-ups (RGB tiles read as YCbCr) differ by tens of levels on average.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# nvJPEG on an H200 vs libjpeg-turbo (measured): YCbCr 4:4:4 equal, 4:2:0 max 37 / mean 0.30
# (chroma upsampling near sharp colour edges); Aperio RGB tiles read as YCbCr: mean 45
CHECK_MEAN_DIFF = 1.5  # mean abs difference (0-255) allowed vs the reader's patches
CHECK_MAX_DIFF = 64  # max abs difference
CHECK_PATCHES = 4  # patches compared at open time
WINDOW_BATCHES = 3  # a decoded tile is kept until this many batches have not used it


class GpuTileSource:
    """Cuts patches of one pyramid level from tiles decoded on ``device``.

    Not thread-safe; one instance per slide. Use :func:`open_gpu_source` to make one.

    Args:
        reader: An open :class:`autoscope.slides.reader.TileReader` (owned: closed by ``close``).
        level: The pyramid level read as is (its fast-path JPEG level must exist).
        patch_px: Patch side in level pixels.
        device: Where tiles are decoded and patches cut (a torch device).
    """

    def __init__(self, reader: Any, level: int, patch_px: int, device: Any) -> None:
        self.reader = reader
        self.level = level
        self.fast = reader.fast_levels[level]
        self.ds = float(reader.level_downsamples[level])
        self.patch_px = patch_px
        self.device = device
        self.tiles_y = math.ceil(self.fast.height / self.fast.tile_h)
        self.cache: OrderedDict[tuple[int, int], tuple[Any, int]] = OrderedDict()  # tile, batch
        self.batches = 0
        self.decoded = 0  # tiles decoded so far (cache misses)
        self.fallback_batches = 0  # batches read by the CPU reader after a decode error
        self._white: Any = None

    def _decode(self, keys: list[tuple[int, int]]) -> list[Any]:
        """Decode tiles ``keys`` on the device: ``[tile_h, tile_w, 3]`` uint8 tensors."""
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        from autoscope.slides.tiff_fast import JCS_RGB

        f = self.fast
        streams = [f.jpeg_stream(tx, ty) for tx, ty in keys]  # stored bytes, tables merged
        data = [torch.frombuffer(bytearray(s), dtype=torch.uint8) for s in streams if s]
        # nvJPEG ignores the Adobe RGB marker; its unconverted planes are the RGB components
        raw = f.colorspace == JCS_RGB and self.device.type == "cuda"
        mode = ImageReadMode.UNCHANGED if raw else ImageReadMode.RGB
        imgs = iter(decode_jpeg(data, mode=mode, device=self.device) if data else [])
        out = []
        for s in streams:
            img = next(imgs).permute(1, 2, 0) if s else None  # CHW -> HWC view
            if img is None or img.shape != (f.tile_h, f.tile_w, 3):  # sparse or odd frame
                tile = self.white_tile().clone()
                if img is not None:
                    h, w = min(img.shape[0], f.tile_h), min(img.shape[1], f.tile_w)
                    tile[:h, :w] = img[:h, :w, :3]
                img = tile
            out.append(img)
        self.decoded += len(keys)
        return out

    def white_tile(self) -> Any:
        """A white tile on the device (background outside the level)."""
        import torch

        if self._white is None:
            shape = (self.fast.tile_h, self.fast.tile_w, 3)
            self._white = torch.full(shape, 255, dtype=torch.uint8, device=self.device)
        return self._white

    def _tiles(self, keys: list[tuple[int, int]]) -> Any:
        """``[len(keys) + 1, tile_h, tile_w, 3]``: the tiles (cached or decoded), then white."""
        import torch

        self.batches += 1
        missing = [k for k in keys if k not in self.cache]
        decoded = dict(zip(missing, self._decode(missing), strict=True))
        tiles = []
        for k in keys:
            tile = decoded[k] if k in decoded else self.cache.pop(k)[0]
            self.cache[k] = (tile, self.batches)  # most recently used last
            tiles.append(tile)
        while self.cache and next(iter(self.cache.values()))[1] <= self.batches - WINDOW_BATCHES:
            self.cache.popitem(last=False)
        return torch.stack([*tiles, self.white_tile()])

    def patches(self, coords: np.ndarray) -> Any:
        """uint8 ``[B, patch_px, patch_px, 3]`` on the device for level-0 corners ``coords``."""
        import torch

        f, p = self.fast, self.patch_px
        xy = np.floor(np.asarray(coords, np.float64).reshape(-1, 2) / self.ds + 0.5).astype(
            np.int64
        )
        lx, ly = xy[:, 0], xy[:, 1]
        tx0, ty0 = lx // f.tile_w, ly // f.tile_h
        ntx = int(((lx + p - 1) // f.tile_w - tx0).max()) + 1 if len(xy) else 1
        nty = int(((ly + p - 1) // f.tile_h - ty0).max()) + 1 if len(xy) else 1
        gx = tx0[:, None, None] + np.arange(ntx)[None, None, :]  # [B, nty, ntx] tile columns
        gy = ty0[:, None, None] + np.arange(nty)[None, :, None]
        gx, gy = np.broadcast_arrays(gx, gy)
        inside = (gx >= 0) & (gx < f.tiles_x) & (gy >= 0) & (gy < self.tiles_y)
        ids = np.where(inside, gy * f.tiles_x + gx, -1)
        uniq, slot = np.unique(ids, return_inverse=True)
        keys = [(int(i % f.tiles_x), int(i // f.tiles_x)) for i in uniq if i >= 0]
        slot = slot.reshape(ids.shape) - int(uniq[0] < 0)  # slots of the kept tiles
        slot[~inside] = len(keys)  # the white tile after them
        tiles = self._tiles(keys)
        # per row and per column (small, on the host): tile row/column in the patch's tile
        # window (nty/ntx: outside the level -> the white tile) and offset inside the tile
        ar = np.arange(p)
        cx, cy = lx[:, None] + ar, ly[:, None] + ar  # [B, p] level columns and rows
        tcol = np.where((cx >= 0) & (cx < f.width), cx // f.tile_w - tx0[:, None], ntx)
        trow = np.where((cy >= 0) & (cy < f.height), cy // f.tile_h - ty0[:, None], nty)
        table = np.full((len(xy), nty + 1, ntx + 1), len(keys), np.int64)
        table[:, :nty, :ntx] = slot
        packed = np.concatenate(
            [
                table.ravel(),
                tcol.ravel(),
                cx.ravel() % f.tile_w,
                trow.ravel(),
                cy.ravel() % f.tile_h,
            ]
        )
        host = torch.from_numpy(packed)
        if self.device.type == "cuda":  # one asynchronous copy instead of one sync per array
            host = host.pin_memory()
        dev = host.to(self.device, non_blocking=True)
        n_tab, n_b = table.size, len(xy)
        tcol_d, xx_d, trow_d, yy_d = dev[n_tab:].view(4, n_b, p)
        table_d = dev[:n_tab].view(table.shape)
        b = torch.arange(n_b, device=self.device)[:, None, None]
        k = table_d[b, trow_d[:, :, None], tcol_d[:, None, :]]  # [B, p, p] tile of each pixel
        flat = (k * f.tile_h + yy_d[:, :, None]) * f.tile_w + xx_d[:, None, :]
        return tiles.view(-1, 3)[flat]

    def reader_patches(self, coords: np.ndarray) -> np.ndarray:
        """The same patches read by the CPU reader (the reference and the fallback)."""
        out = np.empty((len(coords), self.patch_px, self.patch_px, 3), np.uint8)
        for i, (x, y) in enumerate(np.asarray(coords, np.int64).tolist()):
            self.reader.read_region(x, y, self.level, self.patch_px, self.patch_px, out=out[i])
        return out

    def batch(self, coords: np.ndarray) -> Any:
        """:meth:`patches`, or the CPU reader's patches if the device decoder fails on one."""
        import torch

        try:
            return self.patches(coords)
        except RuntimeError as err:  # torchvision raises RuntimeError on a bad JPEG stream
            if not self.fallback_batches:
                log.warning("%s: device JPEG decode failed (%s); CPU reader", self.reader.path, err)
            self.fallback_batches += 1
            return torch.from_numpy(self.reader_patches(coords)).to(self.device)

    def iter_batches(self, coords: np.ndarray, batch_size: int) -> Iterator[tuple[Any, np.ndarray]]:
        """``(patches on the device, coords int64 [B, 2])`` per batch, in order."""
        coords = np.asarray(coords, np.int64).reshape(-1, 2)
        for start in range(0, len(coords), batch_size):
            chunk = coords[start : start + batch_size]
            yield self.batch(chunk), chunk

    def check(self, coords: np.ndarray) -> tuple[float, float]:
        """(max, mean) abs difference of :meth:`patches` vs the reader's on ``coords``."""
        got = self.patches(coords).cpu().numpy().astype(np.int16)
        diff = np.abs(got - self.reader_patches(coords))
        return (float(diff.max()), float(diff.mean())) if diff.size else (0.0, 0.0)

    def close(self) -> None:
        """Drop the cached tiles and close the reader."""
        self.cache.clear()
        self.reader.close()


def open_gpu_source(
    path: str,
    *,
    mpp: float,
    patch_px: int,
    device: Any,
    mpp_x: float | None = None,
    probe: np.ndarray | None = None,
) -> tuple[GpuTileSource | None, str]:
    """A :class:`GpuTileSource` for this slide, or None and why it cannot be used.

    Args:
        path: The slide file. mpp, patch_px: the model's input. device: a torch device.
        mpp_x: Level-0 mpp override. probe: level-0 corners; up to ``CHECK_PATCHES`` of them,
            spread over the list, are compared with the CPU reader before the source is used.
    """
    try:
        import torchvision.io  # noqa: F401 - decode_jpeg

        from autoscope.slides.reader import open_reader
    except ImportError as err:
        return None, f"not installed: {err.name}"
    try:
        reader = open_reader(path, mpp_x)
    except Exception as err:  # noqa: BLE001 - the CPU path reports unreadable slides
        return None, f"cannot open: {err}"
    keep = False
    try:
        level, scale = reader.best_level(mpp)
        if scale != 1.0:
            return None, f"needs resampling (scale {scale:.3f})"
        if reader.fast_levels[level] is None:
            return None, f"level {level} is not a JPEG-tiled TIFF page the fast path reads"
        src = GpuTileSource(reader, level, patch_px, device)
        if probe is not None and len(probe):
            pick = np.unique(np.linspace(0, len(probe) - 1, CHECK_PATCHES).astype(int))
            mx, mean = src.check(np.asarray(probe, np.int64)[pick])
            if mean > CHECK_MEAN_DIFF or mx > CHECK_MAX_DIFF:
                return (
                    None,
                    f"device decode differs from the reader (max {mx:.0f}, mean {mean:.2f})",
                )
        keep = True
        return src, "ok"
    except Exception as err:  # noqa: BLE001 - any decoder surprise: the CPU path is always right
        return None, f"{type(err).__name__}: {err}"
    finally:
        if not keep:
            reader.close()
