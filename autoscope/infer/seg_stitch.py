"""Seamless stitching of overlapping dense tile predictions in a bounded rolling band.

Each tile's class probabilities are weighted by a smooth 2-D window (a Hann window kept above
zero, so the slide's edge pixels, seen by one tile only, still count) and accumulated with the
weights; a pixel's probability is `sum(p * w) / sum(w)`. Tiles arrive in row order (sorted by
their top row): every row above the next tile's top is final, so only a band of `tile_px` rows
is held (memory flat in slide height) and finished rows go to a sink.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

WINDOWS = ("hann", "flat")  # blending windows: hann (smooth, seamless) | flat (plain average)

# (probabilities float32 [C, h, W] normalised where weight > 0, weight float32 [h, W], top row)
Sink = Callable[[np.ndarray, np.ndarray, int], None]


def window(tile_px: int, kind: str = "hann") -> np.ndarray:
    """float32 `[tile_px, tile_px]` blending weights: the outer product of a 1-D window.

    `hann` is `sin²(pi (i + 0.5) / n)`: largest in the tile's centre, small but positive at its
    border (the net sees least context there); `flat` weighs every pixel alike.
    """
    if kind not in WINDOWS:
        raise ValueError(f"window {kind!r}: one of {', '.join(WINDOWS)}")
    if kind == "flat":
        return np.ones((tile_px, tile_px), np.float32)
    w = np.sin(np.pi * (np.arange(tile_px) + 0.5) / tile_px) ** 2
    w = np.maximum(w, 1e-3)
    return np.outer(w, w).astype(np.float32)


class BandStitcher:
    """Accumulate weighted tile probabilities over a band of rows and hand finished rows on.

    Args:
        num_classes: channels of the probabilities.
        width_px: map width (pixels at the model's resolution).
        height_px: map height.
        tile_px: tile side (the band's height).
        sink: called with each run of finished rows, top to bottom, exactly once per row that
            any tile touched (rows no tile touches are skipped).
        kind: the blending window.
    """

    def __init__(
        self,
        num_classes: int,
        width_px: int,
        height_px: int,
        tile_px: int,
        sink: Sink,
        kind: str = "hann",
    ) -> None:
        self.c, self.w, self.h, self.t = num_classes, width_px, height_px, tile_px
        self.win = window(tile_px, kind)
        self.acc = np.zeros((num_classes, tile_px, width_px), np.float32)
        self.wsum = np.zeros((tile_px, width_px), np.float32)
        self.top = 0  # map row of the band's first row
        self.sink = sink
        self.dirty = 0  # band rows touched so far (from the top)

    def _emit(self, rows: int) -> None:
        """Hand the band's first `rows` rows to the sink and move the band down by `rows`."""
        rows = min(rows, self.t)
        if rows <= 0:
            return
        if self.dirty > 0:
            n = min(rows, self.dirty)
            wsum = self.wsum[:n]
            probs = self.acc[:, :n] / np.maximum(wsum, 1e-12)
            self.sink(probs, wsum.copy(), self.top)
        keep = self.t - rows
        self.acc[:, :keep] = self.acc[:, rows:]
        self.acc[:, keep:] = 0.0
        self.wsum[:keep] = self.wsum[rows:]
        self.wsum[keep:] = 0.0
        self.top += rows
        self.dirty = max(0, self.dirty - rows)

    def advance(self, top_row: int) -> None:
        """Every row above `top_row` is final: emit it (tiles must come in top-row order)."""
        if top_row < self.top:
            raise ValueError(f"tile row {top_row} above the band (row {self.top}): sort the tiles")
        gap = top_row - self.top
        if gap >= self.t:  # nothing left in the band touches the new tile: emit all, jump
            self._emit(self.t)
            self.top = top_row
            return
        self._emit(gap)

    def add(self, probs: np.ndarray, x_px: int, y_px: int) -> None:
        """Blend one tile's probabilities `[C, tile, tile]` with its top-left at map (x, y)."""
        self.advance(y_px)
        r = y_px - self.top
        h = min(self.t, self.h - y_px) - 0
        w = min(self.t, self.w - x_px)
        if h <= 0 or w <= 0:
            return
        win = self.win[:h, :w]
        self.acc[:, r : r + h, x_px : x_px + w] += probs[:, :h, :w] * win
        self.wsum[r : r + h, x_px : x_px + w] += win
        self.dirty = max(self.dirty, r + h)

    def close(self) -> None:
        """Emit the rows still in the band."""
        self._emit(self.t)


class MapSink:
    """Writes finished rows as labels (0 none, k + 1 class k) and confidence (max p x 255)
    into memory maps under `folder`, counting pixels per class."""

    def __init__(self, folder: Path, num_classes: int) -> None:
        self.folder, self.c = Path(folder), num_classes
        self.counts = np.zeros(num_classes, np.int64)
        self.labels: np.ndarray | None = None
        self.confidence: np.ndarray | None = None

    def __call__(self, shape: tuple[int, int]) -> Sink:
        mm = np.lib.format.open_memmap
        self.labels = mm(self.folder / "labels.npy", mode="w+", dtype=np.uint8, shape=shape)
        self.confidence = mm(self.folder / "confidence.npy", mode="w+", dtype=np.uint8, shape=shape)
        return self.rows

    def rows(self, probs: np.ndarray, weight: np.ndarray, top: int) -> None:
        """One run of finished rows."""
        seen = weight > 0
        top_k = probs.argmax(0)
        lab = np.where(seen, top_k + 1, 0).astype(np.uint8)
        conf = np.where(seen, np.round(probs.max(0) * 255), 0).astype(np.uint8)
        self.labels[top : top + len(lab)] = lab
        self.confidence[top : top + len(lab)] = conf
        self.counts += np.bincount(top_k[seen], minlength=self.c)[: self.c]
