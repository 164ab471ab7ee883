"""Formats OpenSlide does not open, and which library reads each (zarr, tifffile, wsidicom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_other(path: Path, fmt: str, mpp_x: float | None = None) -> Any:
    """A reader of a slide OpenSlide does not open: OME-Zarr/OME-TIFF (zarr, tifffile), DICOM.

    Raises:
        SlideProblem: the library cannot read it either (the message says why).
    """
    if fmt == "ome-zarr":
        from autoscope.slides.ome import open_ome_zarr

        return open_ome_zarr(path, mpp_x)
    if fmt == "ome-tiff":
        from autoscope.slides.ome import open_ome_tiff

        return open_ome_tiff(path, mpp_x)
    from autoscope.slides.dicom import open_dicom

    return open_dicom(path, mpp_x)


def other_format(path: Path) -> str | None:
    """The format `open_other` reads for a path OpenSlide refused (None: none of them)."""
    if path.is_dir() and path.suffix.lower() == ".zarr":
        return "ome-zarr"
    if path.suffix.lower() == ".dcm":
        return "dicom"
    from autoscope.slides.ome import is_ome_tiff

    return "ome-tiff" if is_ome_tiff(path) else None


def dicom_file(path: Path) -> Path | None:
    """The first `.dcm` file of a DICOM series folder (the slide a folder stands for), or None."""
    if not path.is_dir() or path.suffix.lower() == ".zarr":
        return None
    try:
        files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".dcm" and f.is_file())
    except OSError:
        return None
    return files[0] if files else None
