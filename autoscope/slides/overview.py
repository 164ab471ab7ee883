"""Per-slide pictures beside the registry: a thumbnail and a low-resolution tissue mask.

Both come from the one tile reader (`autoscope.slides.reader`) and the tissue detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autoscope.atomic import atomic_file


def _save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_file(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def write_overview(
    path: Path,
    slide_id: str,
    out_dir: Path,
    *,
    thumbnail_px: int,
    mask_mpp: float,
    mpp: float | None,
    detector: Any,
) -> dict[str, Any]:
    """Write `thumbnails/<id>.png` and `masks/<id>.png`; return paths and tissue fraction."""
    from autoscope.slides.reader import open_reader
    from autoscope.slides.tissue import slide_mask

    reader = open_reader(path, mpp_x=mpp)
    try:
        thumb = reader.thumbnail(thumbnail_px)
        mask, actual_mpp = slide_mask(reader, mask_mpp, detector)
    finally:
        reader.close()
    thumb_path = out_dir / "thumbnails" / f"{slide_id}.png"
    mask_path = out_dir / "masks" / f"{slide_id}.png"
    _save_png(thumb, thumb_path)
    _save_png(mask.astype(np.uint8) * 255, mask_path)
    return {
        "thumbnail": str(thumb_path),
        "tissue_mask": str(mask_path),
        "mask_mpp": round(actual_mpp, 4) if actual_mpp else None,
        "tissue_fraction": round(float(mask.mean()), 4),
    }
