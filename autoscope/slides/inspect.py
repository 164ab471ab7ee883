"""A slide's facts read with OpenSlide, and in plain words why a file cannot be used."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


class SlideProblem(Exception):
    """A file that cannot be registered as a usable slide; the message says why, for a person."""


def content_hash(path: Path, hash_bytes: int) -> str:
    """Fast content key: sha256 of the size plus the first and last `hash_bytes` bytes.

    Raises:
        SlideProblem: the file cannot be read.
    """
    try:
        size = path.stat().st_size
        h = hashlib.sha256(str(size).encode())
        with open(path, "rb") as f:
            h.update(f.read(hash_bytes))
            if size > hash_bytes:
                f.seek(max(size - hash_bytes, hash_bytes))
                h.update(f.read(hash_bytes))
    except IsADirectoryError:
        raise SlideProblem("cannot read: is a directory, not a slide file") from None
    except OSError as e:
        raise SlideProblem(f"cannot read file: {e.strerror or e}") from None
    return h.hexdigest()[:16]


def _why_unsupported(path: Path) -> str:
    """Explain why OpenSlide refused a file, using tifffile for TIFF-family files."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if not page.is_tiled:
                return (
                    "unsupported: the TIFF is stripped, not tiled; OpenSlide needs a tiled "
                    "(pyramidal) TIFF — convert it, e.g. "
                    "`vips tiffsave in.tif out.tif --tile --pyramid`"
                )
            codec = page.compression.name
            return f"unsupported: a tiled TIFF OpenSlide does not recognise (compression {codec})"
    except Exception as e:  # noqa: BLE001 - any parse failure means the file is damaged
        if path.suffix.lower() in (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif"):
            return (
                f"corrupt: not a valid {path.suffix.lower()} file ({str(e).splitlines()[0][:80]})"
            )
        return "unsupported: not a format OpenSlide can open"


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def read_slide_facts(path: Path) -> dict[str, Any]:
    """Open a slide with OpenSlide and return its registry facts.

    Raises:
        SlideProblem: OpenSlide cannot open the file (the message says why).
    """
    import openslide

    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise SlideProblem(_why_unsupported(path)) from None
    except openslide.OpenSlideError as e:
        raise SlideProblem(f"corrupt: OpenSlide failed to read it ({e})") from None
    try:
        props = dict(slide.properties)
        return {
            "vendor": vendor or "generic",
            "format": path.suffix.lower().lstrip("."),
            "level_count": slide.level_count,
            "level_dimensions": json.dumps([list(d) for d in slide.level_dimensions]),
            "level_downsamples": json.dumps([round(d, 4) for d in slide.level_downsamples]),
            "width_px": int(slide.dimensions[0]),
            "height_px": int(slide.dimensions[1]),
            "file_mpp_x": _float(props.get("openslide.mpp-x")),
            "file_mpp_y": _float(props.get("openslide.mpp-y")),
            "objective_power": _float(props.get("openslide.objective-power")),
            "associated_images": json.dumps(sorted(slide.associated_images)),
            "file_bytes": os.path.getsize(path),
        }
    finally:
        slide.close()
