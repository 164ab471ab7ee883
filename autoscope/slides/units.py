"""Resolution units shared by datasets, training and inference: one MPP tolerance, one rounding.

A patch is `patch_px` pixels at `mpp` (um/px); on a slide whose level 0 is `slide_mpp` its
footprint is `level0_px(slide_mpp, mpp, patch_px)` level-0 pixels. Every sampler and reader of
the project converts lengths this way, so training and inference cut the same patches.
"""

from __future__ import annotations

MPP_TOLERANCE = 0.01  # a pyramid level within 1 % of the wanted MPP is read as is (no resampling)


def level0_px(slide_mpp: float, mpp: float, px: int | float) -> int:
    """A length of `px` pixels at `mpp`, in whole level-0 pixels of a `slide_mpp` slide (>= 1)."""
    return max(1, round(float(px) * float(mpp) / float(slide_mpp)))


def same_mpp(a: float, b: float) -> bool:
    """True when two resolutions agree within :data:`MPP_TOLERANCE` (relative)."""
    return abs(float(a) / float(b) - 1.0) <= MPP_TOLERANCE
