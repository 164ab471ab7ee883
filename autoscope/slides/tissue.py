"""Tissue detection on low-resolution RGB: stained, not glass, not pen ink.

A pixel is tissue when it is coloured (HSV saturation), absorbs light (optical density), is not
near-white glass and is not pen ink (red, green, blue, black or solid dark areas). The colour
rules are a lookup table per detector; morphology (scipy.ndimage) then closes small gaps, fills
small holes and drops specks. On the few hundred pixels a side of a whole-slide mask this costs
about a millisecond. ``slide_mask`` reads that image from a pyramid level of the slide.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from autoscope.errors import UserError
from autoscope.slides.tissue_rules import (
    DARK,
    PEN,
    STRONG,
    WEAK,
    colour_table,
    dilate,
    disk,
    small_parts,
)
from autoscope.slides.units import MPP_TOLERANCE

log = logging.getLogger(__name__)

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


@dataclass
class TissueDetector:
    """Foreground (tissue) masks from RGB images; keyword arguments are ``conf/tissue/*.yaml``.

    Attributes:
        min_saturation: HSV saturation (0-1) above which a pixel may be stained tissue.
        edge_saturation: Saturation a pixel at the edge of a stained area needs (a pixel half
            covered by tissue): keeps masks from swelling by the partial pixels at their edge.
        max_brightness: A pixel whose channels are all brighter than this (0-1) is glass.
        min_od: Minimal optical density summed over R, G and B: faint haze is not tissue.
        pen_filter: Reject red, green, blue and black pen ink.
        min_object_px: Drop connected tissue specks smaller than this (mask pixels).
        close_px: Radius of the closing that joins tissue across small gaps (mask pixels).
        fill_holes_px: Holes in tissue smaller than this are filled (mask pixels).
        min_fraction: Default tissue fraction above which ``is_tissue`` calls an image tissue.
        pen_min_saturation: Saturation above which a green/blue hue is ink, not counterstain.
        red_pen_saturation: Saturation above which a pure red hue is ink, not eosin.
        red_pen_hue: Hue distance from pure red (0-1 scale) within which a hue is red ink.
        black_pen_value: Pixels darker than this (HSV value) and greyish are black ink.
        blue_pen_saturation: Saturation above which a blue hue is ink, not hematoxylin (IHC).
        dark_ink_value: Pixels darker than this (HSV value) are ink when they form solid areas...
        dark_ink_width: ...at least this share of the image's shorter side wide (nuclei are not).
        pen_dilate_px: Grow pen masks by this many pixels to catch the ink's blurred edges.
    """

    min_saturation: float = 0.07
    edge_saturation: float = 0.13
    max_brightness: float = 0.92
    min_od: float = 0.12
    pen_filter: bool = True
    min_object_px: int = 16
    close_px: int = 2
    fill_holes_px: int = 16
    min_fraction: float = 0.3
    pen_min_saturation: float = 0.2
    red_pen_saturation: float = 0.12
    red_pen_hue: float = 0.035
    black_pen_value: float = 0.25
    blue_pen_saturation: float = 0.45
    dark_ink_value: float = 0.35
    dark_ink_width: float = 0.015
    pen_dilate_px: int = 2

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> TissueDetector:
        """The detector of plain settings: `conf/tissue/*.yaml` as a dict, or a model card's.

        A `_target_` key (the config's, or one stored with the params) is ignored, so the
        project's detector can be rebuilt from what a model card stored without Hydra.

        Raises:
            UserError: a key the detector does not take.
        """
        given = {k: v for k, v in dict(params or {}).items() if k != "_target_"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UserError(f"tissue: unknown setting '{unknown[0]}' ({', '.join(sorted(known))})")
        return cls(**given)

    def params(self) -> dict[str, Any]:
        """The settings as a plain dict (what `from_params` takes; stored in model cards)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def pixels(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel decisions before morphology: ``(stained, pen)``, both HxW bool.

        Colour rules are looked up in a 6-bit-per-channel table built once per settings, so a
        pixel costs a few integer operations. Stained pixels at the edge of a stained area must
        reach ``edge_saturation`` (a half-covered mask pixel), inner ones ``min_saturation``.
        """
        rgb = _as_rgb(rgb)
        table = colour_table(self._colour_rules())
        idx = (rgb[..., 0] >> 2).astype(np.intp) << 12
        idx |= (rgb[..., 1] >> 2).astype(np.intp) << 6
        idx |= rgb[..., 2] >> 2
        flags = table[idx]
        weak = (flags & WEAK) > 0
        inner = ~dilate(~weak, _CROSS)  # erosion; outside the image counts as stained
        stained = ((flags & STRONG) > 0) | inner
        pen = np.zeros_like(weak)
        if self.pen_filter:
            pen = (flags & PEN) > 0
            dark = (flags & DARK) > 0
            if dark.any():  # dark ink: solid dark areas wider than nuclei (survive an opening)
                r = max(2, round(min(dark.shape) * self.dark_ink_width))
                core = ~dilate(~dark, disk(r))  # erosion; the ink may leave the image
                pen |= dilate(core, disk(r))
            if self.pen_dilate_px > 0 and pen.any():
                pen = dilate(pen, disk(self.pen_dilate_px))
        return stained & ~pen, pen

    def pen_mask(self, rgb: np.ndarray) -> np.ndarray:
        """Pen ink pixels (HxW bool): red, green, blue, black and dark inks, grown a little."""
        return self.pixels(rgb)[1]

    def _colour_rules(self) -> tuple[float, ...]:
        """The per-pixel thresholds, in :func:`_colour_table`'s order."""
        return (
            self.min_saturation, self.edge_saturation, self.max_brightness, self.min_od,
            self.red_pen_hue, self.red_pen_saturation, self.pen_min_saturation,
            self.blue_pen_saturation, self.black_pen_value, self.dark_ink_value,
        )  # fmt: skip

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        """Tissue mask (HxW bool) of an RGB uint8 image (HxWx3; an alpha channel is ignored)."""
        m, pen = self.pixels(rgb)
        if self.close_px > 0 and m.any():
            r, foot = self.close_px, disk(self.close_px)
            pad = dilate(np.pad(m, r), foot)  # padded: the closing must not erode the border
            m = ~dilate(~pad, foot)[r:-r, r:-r] | m
        if self.fill_holes_px > 0 and m.any():
            m |= small_parts(~m, self.fill_holes_px)
        m &= ~pen  # morphology must not close over ink
        if self.min_object_px > 0 and m.any():
            m &= ~small_parts(m, self.min_object_px)
        return m

    def tissue_fraction(self, rgb: np.ndarray) -> float:
        """Share of the image that is tissue (0-1)."""
        m = self.mask(rgb)
        return float(m.mean()) if m.size else 0.0

    def is_tissue(self, rgb: np.ndarray, min_fraction: float | None = None) -> bool:
        """Whether at least ``min_fraction`` (default: the detector's) of the image is tissue."""
        limit = self.min_fraction if min_fraction is None else min_fraction
        return self.tissue_fraction(rgb) >= limit

    def slide_mask(self, slide: Any, mask_mpp: float) -> tuple[np.ndarray, float | None]:
        """Tissue mask of a whole slide at about ``mask_mpp``; see :func:`slide_mask`."""
        return slide_mask(slide, mask_mpp, self)


def slide_mask(
    slide: Any, mask_mpp: float, detector: TissueDetector | None = None
) -> tuple[np.ndarray, float | None]:
    """Read a low-resolution image of the whole slide and mask its tissue.

    Reads the coarsest pyramid level not coarser than ``mask_mpp`` and block-averages it by an
    integer factor to the nearest grid at or finer than ``mask_mpp``; pixel ``(i, j)`` of the mask
    covers level-0 pixels ``[j*d, (j+1)*d) x [i*d, (i+1)*d)`` with ``d = actual_mpp / slide mpp``.

    Args:
        slide: A ``TileReader`` (``autoscope.slides.reader``), an ``openslide.OpenSlide`` or a path.
        mask_mpp: Wanted mask resolution (micrometres per pixel).
        detector: The detector to use (default settings if omitted).

    Returns:
        ``(mask, actual_mpp)``: HxW bool and the mask's mpp. A slide without MPP is masked at a
        downsample of 32 and ``actual_mpp`` is None.
    """
    detector = detector or TissueDetector()
    opened = None
    if isinstance(slide, str | bytes) or hasattr(slide, "__fspath__"):
        import openslide

        slide = opened = openslide.OpenSlide(str(slide))
    try:
        mpp = _slide_mpp(slide)
        if mask_mpp <= 0:
            raise UserError(f"tissue mask mpp must be positive, got {mask_mpp}")
        want = 32.0 if mpp is None else mask_mpp / mpp  # level-0 px per mask px
        downs = [float(d) for d in slide.level_downsamples]
        near = 1 + MPP_TOLERANCE  # a level within the MPP tolerance counts as the wanted one
        # a slide coarser than the wanted mask (e.g. 29 um/px for a 16 um/px mask) is masked at
        # its own resolution: level 0, not reduced
        fine = [i for i, d in enumerate(downs) if d <= want * near]
        level = max(fine, key=downs.__getitem__, default=0)
        factor = max(1, math.floor(want / downs[level] * near))
        img = _read_level(slide, level)
        h, w = img.shape[0] // factor, img.shape[1] // factor
        if factor > 1:  # box average (PIL, C speed) on the whole-block grid
            from PIL import Image

            crop = np.ascontiguousarray(img[: h * factor, : w * factor])
            img = np.asarray(Image.fromarray(crop).reduce(factor))
        actual = None if mpp is None else mpp * downs[level] * factor
        mask = detector.mask(img)
        if not mask.any():
            log.warning(
                "%s: no tissue detected (tissue fraction 0.0): a blank, fluorescence (dark "
                "background) or unstained slide? check its thumbnail and the tissue settings",
                getattr(slide, "path", None) or "slide",
            )
        return mask, actual
    finally:
        if opened is not None:
            opened.close()


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4) or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.shape} {rgb.dtype}")
    return rgb[..., :3]


def _slide_mpp(slide: Any) -> float | None:
    """Level-0 mpp of a TileReader (``.mpp``) or an OpenSlide (``openslide.mpp-x``)."""
    if hasattr(slide, "properties"):
        value = slide.properties.get("openslide.mpp-x")
        return float(value) if value else None
    return getattr(slide, "mpp", None)


def _read_level(slide: Any, level: int) -> np.ndarray:
    """The whole of one pyramid level as RGB uint8 (transparent areas become white)."""
    w, h = (int(v) for v in slide.level_dimensions[level])
    if hasattr(slide, "properties"):  # OpenSlide: RGBA PIL image, premultiplied transparency
        rgba = np.asarray(slide.read_region((0, 0), level, (w, h)))
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255
        return rgb
    return slide.read_region(0, 0, level, w, h)
