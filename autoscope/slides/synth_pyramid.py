"""An in-memory synthetic image written as a pyramidal tiled JPEG TIFF (levels halving)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoscope.atomic import atomic_file
from autoscope.slides.synth import SUBSAMPLING, _shrink


def write_pyramid(
    path: Path,
    img: np.ndarray,
    *,
    mpp: float,
    tile_px: int = 256,
    subsampling: str = "420",
    jpeg_quality: int = 90,
    with_mpp: bool = True,
    min_level_px: int = 512,
) -> None:
    """Write `img` (level 0, in memory) as a pyramidal tiled JPEG TIFF, levels halving."""
    import tifffile

    opts: dict = {"tile": (tile_px, tile_px), "photometric": "rgb", "compression": "jpeg"}
    opts.update(compressionargs={"level": jpeg_quality}, subsampling=SUBSAMPLING[subsampling])
    if with_mpp:
        opts.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    with atomic_file(path) as tmp, tifffile.TiffWriter(tmp) as tif:
        tif.write(img, description="AutoSCOPE synthetic cell slide", metadata=None, **opts)
        level = _shrink(img, 2)
        while max(level.shape[:2]) >= min_level_px:
            tif.write(level, subfiletype=1, metadata=None, **opts)
            level = _shrink(level, 2)
