"""The segmentation engine's settings: the `infer.segment` block of `conf/infer/default.yaml`."""

from __future__ import annotations

from dataclasses import dataclass

from autoscope.errors import UserError
from autoscope.infer.seg_stitch import WINDOWS
from autoscope.infer.spec import InferSpec, block_settings

AUTO_TILE_PX = (
    256  # tile_px null: at least this (a U-Net trained on small patches runs on larger tiles)
)
SETTINGS = {  # infer.segment keys (conf/infer/default.yaml) and their defaults
    "tile_px": None,
    "overlap_px": 32,
    "window": "hann",
    "simplify_um": 2.0,
    "min_area_um2": 100.0,
}


@dataclass(frozen=True)
class SegSettings:
    """The segmentation engine's settings (`infer.segment`), checked.

    Attributes:
        tile_px: tile side at the model's resolution (None: the card's patch_px, at least
            `AUTO_TILE_PX`); a fully
            convolutional net runs on larger tiles than it was trained on (fewer seams, faster).
        overlap_px: overlap of neighbouring tiles (the blended border), < tile_px.
        window: blending window, hann | flat.
        simplify_um: polygon simplification tolerance in micrometres.
        min_area_um2: polygon parts smaller than this are dropped.
    """

    tile_px: int
    overlap_px: int
    window: str
    simplify_um: float
    min_area_um2: float

    @property
    def step_px(self) -> int:
        """Grid step at the model's resolution."""
        return self.tile_px - self.overlap_px

    @classmethod
    def from_spec(cls, spec: InferSpec) -> SegSettings:
        """The settings of `spec.segment` over the defaults.

        Raises:
            UserError: an unknown key or a bad value (one line naming `infer.segment.<key>`).
        """
        v = block_settings("infer.segment", spec.segment, SETTINGS, "segmentation")
        tile = int(v["tile_px"] or max(spec.patch_px, AUTO_TILE_PX))
        out = cls(tile, int(v["overlap_px"]), str(v["window"]), float(v["simplify_um"]),
                  float(v["min_area_um2"]))  # fmt: skip
        if not 0 <= out.overlap_px < tile:
            raise UserError(f"infer.segment.overlap_px: {out.overlap_px} must be in 0..{tile - 1}")
        if out.window not in WINDOWS:
            raise UserError(f"infer.segment.window: {out.window!r} is not {' | '.join(WINDOWS)}")
        return out
