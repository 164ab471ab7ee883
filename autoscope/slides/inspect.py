"""A slide's facts read with OpenSlide, and in plain words why a file cannot be used."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from autoscope.slides.formats import dicom_file, open_other, other_format  # noqa: F401
from autoscope.slides.problems import SlideProblem  # noqa: F401 (raised here, caught by callers)

TIFF_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif")


def content_hash(path: Path, hash_bytes: int) -> str:
    """Fast content key: sha256 of the size plus the first and last `hash_bytes` bytes.

    Raises:
        SlideProblem: the file cannot be read.
    """
    if path.is_dir() and path.suffix.lower() == ".zarr":
        return _folder_hash(path, hash_bytes)
    path = dicom_file(path) or path  # a DICOM series folder: its first file
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
        if e.errno == errno.ELOOP:
            raise SlideProblem(f"cannot read: a symbolic link loop{_target(path)}") from None
        if e.errno == errno.ENOENT and path.is_symlink():
            raise SlideProblem(f"cannot read: a broken symbolic link{_target(path)}") from None
        raise SlideProblem(f"cannot read file: {e.strerror or e}") from None
    return h.hexdigest()[:16]


def _target(path: Path) -> str:
    """` (name -> target)` of a symbolic link, or "" for a path that is not one."""
    try:
        return f" ({path.name} -> {os.readlink(path)})"
    except OSError:
        return ""


def _folder_hash(path: Path, hash_bytes: int) -> str:
    """Content key of a slide folder (OME-Zarr): its file names and sizes plus metadata bytes."""
    h = hashlib.sha256()
    try:
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = f.relative_to(path).as_posix()
            h.update(f"{rel}:{f.stat().st_size};".encode())
            if f.name in (".zattrs", ".zgroup", ".zarray", "zarr.json"):
                h.update(f.read_bytes()[:hash_bytes])
    except OSError as e:
        raise SlideProblem(f"cannot read folder: {e.strerror or e}") from None
    return h.hexdigest()[:16]


def _truncated(tif: Any, path: Path) -> str | None:
    """Why a TIFF looks cut short (its tiles or pages lie past the end), or None."""
    size = path.stat().st_size
    if len(tif.pages) == 0:
        return f"corrupt: truncated or damaged — no readable TIFF page in {size} bytes"
    end = 0
    for page in tif.pages:
        offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
        if len(offsets):
            end = max(end, max(o + c for o, c in zip(offsets, counts, strict=False)))
    if end > size:
        return (
            f"corrupt: truncated — the file has {size} bytes but its image data runs to {end} "
            "(an incomplete copy or download?)"
        )
    return None


def _why_unsupported(path: Path) -> str:
    """Explain why OpenSlide refused a file, using tifffile for TIFF-family files."""
    import logging

    import tifffile

    quiet = logging.getLogger("tifffile")
    level, quiet.level = quiet.level, logging.CRITICAL  # its "invalid offset" lines: ours is one
    try:
        with tifffile.TiffFile(path) as tif:
            if why := _truncated(tif, path):
                return why
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
        if path.suffix.lower() in TIFF_SUFFIXES:
            return (
                f"corrupt: not a valid {path.suffix.lower()} file ({str(e).splitlines()[0][:80]})"
            )
        return "unsupported: not a format OpenSlide can open"
    finally:
        quiet.level = level


def _other_facts(path: Path, fmt: str) -> dict[str, Any]:
    from autoscope.slides.ome import facts

    reader = open_other(path, fmt)
    try:
        return facts(reader, path, path.suffix.lower().lstrip("."))  # as OpenSlide rows
    finally:
        reader.close()


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def read_slide_facts(path: Path) -> dict[str, Any]:
    """Open a slide (OpenSlide first, then zarr, tifffile or wsidicom) and return its facts.

    A DICOM series folder is read from its first `.dcm` file (`file_bytes`: all of them).

    Raises:
        SlideProblem: no backend can open the file (the message says why).
    """
    if (first := dicom_file(path)) is not None:
        facts = _read_facts(first)
        facts["file_bytes"] = sum(
            f.stat().st_size for f in path.iterdir() if f.suffix.lower() == ".dcm"
        )
        return facts
    return _read_facts(path)


def _read_facts(path: Path) -> dict[str, Any]:
    import openslide

    if path.is_dir() and path.suffix.lower() == ".zarr":
        return _other_facts(path, "ome-zarr")
    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        if path.suffix.lower() == ".dcm":
            return _other_facts(path, "dicom")
        from autoscope.slides.ome import is_ome_tiff

        if is_ome_tiff(path):
            return _other_facts(path, "ome-tiff")
        raise SlideProblem(_why_unsupported(path)) from None
    except openslide.OpenSlideError as e:
        if path.suffix.lower() == ".dcm":
            return _other_facts(path, "dicom")
        why = _why_unsupported(path) if path.suffix.lower() in TIFF_SUFFIXES else ""
        if why.startswith("corrupt: truncated"):
            raise SlideProblem(why) from None
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
