"""Opening a slide: `open_reader` gives the one tile reader API for every format.

OpenSlide-readable slides get :class:`~autoscope.slides.tile_reader.TileReader` (fast JPEG path,
see that module); an OME-Zarr folder, or an OME-TIFF or DICOM file OpenSlide refuses, gets a reader
of :mod:`autoscope.slides.ome` / :mod:`autoscope.slides.dicom` with the same API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoscope.errors import UserError
from autoscope.slides.tile_reader import TileReader

__all__ = ["TileReader", "open_reader"]


def open_reader(path: str | Path, mpp_x: float | None = None, **kwargs: Any) -> TileReader:
    """Open a slide for reading (see :class:`TileReader` for the keyword options).

    OpenSlide first; an OME-Zarr folder, or an OME-TIFF or DICOM file OpenSlide refuses, is read
    through zarr, tifffile or wsidicom (:mod:`autoscope.slides.ome`, :mod:`autoscope.slides.dicom`)
    with the same API. A DICOM series folder opens from its first `.dcm` file.

    Raises:
        UserError: no backend can open it (the message names the file and why).
    """
    from autoscope.slides.formats import dicom_file, open_other, other_format
    from autoscope.slides.problems import SlideProblem

    p = Path(path)
    if (first := dicom_file(p)) is not None:  # a DICOM series folder: open its first file
        p = path = first
    if p.is_dir() and p.suffix.lower() == ".zarr":
        fmt: str | None = "ome-zarr"
    else:
        try:
            return TileReader(path, mpp_x, **kwargs)
        except UserError:
            fmt = other_format(p) if p.is_file() else None
            if fmt is None:
                raise
    try:
        return open_other(p, fmt, mpp_x)
    except SlideProblem as e:
        raise UserError(f"{path}: {e}") from None
