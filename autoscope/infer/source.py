"""Where the engine's tiles come from: the slide reader, the tissue grid and prefetched batches.

Everything goes through the slide engine (`autoscope.slides.reader.open_reader`,
`autoscope.slides.parallel.iter_batches`, `autoscope.slides.tissue`): a GPU host needs only
torch, numpy, scipy, tifffile, imagecodecs, OpenSlide and shapely besides it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from autoscope.errors import UserError
from autoscope.slides.units import level0_px

__all__ = ["SlideError", "check_resolution", "level0_px", "open_slide", "tissue_grid"]

# Not a second MPP tolerance (that is `slides.units.MPP_TOLERANCE`, used by the reader to pick a
# level): how much coarser than the model a slide may be, read with that much upsampling.
MAX_UPSAMPLE = 1.10  # a slide coarser than the model by more than this cannot be used


class SlideError(UserError):
    """A slide the engine cannot run on: unreadable, without MPP, or too coarse for the model."""


def open_slide(path: str, mpp_x: float | None = None) -> Any:
    """Open a slide with the slide engine's reader (which itself falls back to OpenSlide).

    Raises:
        SlideError: the file cannot be opened as a slide.
    """
    from autoscope.slides.reader import open_reader

    try:
        return open_reader(str(path), mpp_x=mpp_x)
    except UserError as e:  # the reader already says which file and why
        raise SlideError(str(e)) from None
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


def tissue_grid(
    reader: Any,
    *,
    mpp: float,
    patch_px: int,
    stride_px: int,
    tissue: Callable[[np.ndarray], np.ndarray] | None,
    min_tissue: float = 0.1,
    cover_edges: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Level-0 top-left corners of the grid tiles that hold tissue.

    `cover_edges` also places tiles that stick out past the right/bottom edge (a dense map
    covers every pixel; `slides.samplers.grid`).

    The one sampler and coverage rule of the project (`slides.samplers.foreground_grid`, as in
    dataset building) on the tissue mask of a thumbnail with about 4 mask pixels per grid step.

    Returns:
        (coords int64 [N, 2], thumbnail uint8 [h, w, 3], thumbnail downsample in level-0 px per px).
    """
    from autoscope.slides.samplers import foreground_grid

    width0, height0 = reader.level_dimensions[0]
    tile0, step0 = level0_px(reader.mpp, mpp, patch_px), level0_px(reader.mpp, mpp, stride_px)
    mask_ds = max(1.0, step0 / 4)  # at least ~4 mask px per grid step
    thumb = reader.thumbnail(max(64, math.ceil(max(width0, height0) / mask_ds)))
    ds = max(width0 / thumb.shape[1], height0 / thumb.shape[0])
    if tissue is None:
        from autoscope.slides.tissue import TissueDetector

        tissue = TissueDetector().mask
    mask = np.asarray(tissue(thumb), bool)
    coords = foreground_grid(
        mask,
        ds,
        tile0,
        step0,
        min_tissue,
        width=int(width0),
        height=int(height0),
        cover_edges=cover_edges,
    )
    return np.asarray(coords, np.int64), thumb, ds
