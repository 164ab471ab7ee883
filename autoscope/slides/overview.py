"""Per-slide pictures beside the registry: a thumbnail and a low-resolution tissue mask."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

FALLBACK_DOWNSAMPLE = 32  # mask resolution for slides without MPP


def _save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    Image.fromarray(img).save(tmp)
    os.replace(tmp, path)


def _low_res(slide: Any, width_px: int, height_px: int) -> np.ndarray:
    """RGB image of the whole slide at about (width_px, height_px), composited over white."""
    img = slide.get_thumbnail((max(1, width_px), max(1, height_px)))
    return np.asarray(img.convert("RGB"))


def write_overview(
    path: Path, slide_id: str, out_dir: Path, *, thumbnail_px: int, mask_mpp: float,
    mpp: float | None, detector: Any,
) -> dict[str, Any]:
    """Write `thumbnails/<id>.png` and `masks/<id>.png`; return their paths and the tissue fraction."""
    import openslide

    slide = openslide.OpenSlide(str(path))
    try:
        w, h = slide.dimensions
        thumb = _low_res(slide, thumbnail_px, thumbnail_px)
        scale = (mpp / mask_mpp) if mpp else 1.0 / FALLBACK_DOWNSAMPLE
        mask_rgb = _low_res(slide, round(w * scale), round(h * scale))
    finally:
        slide.close()
    mask = detector.mask(mask_rgb)
    thumb_path = out_dir / "thumbnails" / f"{slide_id}.png"
    mask_path = out_dir / "masks" / f"{slide_id}.png"
    _save_png(thumb, thumb_path)
    _save_png(mask.astype(np.uint8) * 255, mask_path)
    actual = (mpp * w / mask.shape[1]) if mpp else None
    return {
        "thumbnail": str(thumb_path),
        "tissue_mask": str(mask_path),
        "mask_mpp": round(actual, 4) if actual else None,
        "tissue_fraction": round(float(mask.mean()), 4),
    }
