"""DICOM WSI series that OpenSlide cannot open, read through wsidicom.

OpenSlide opens most DICOM WSIs (TILED_FULL, JPEG) and stays the first choice; a series it
refuses (sparse tiling, other transfer syntaxes, levels split over files it does not pair) is
opened with wsidicom from the folder holding the file. Its levels become an
:class:`autoscope.slides.ome.ArrayPyramidReader`-style reader with the one reader API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autoscope.slides.ome import ArrayPyramidReader
from autoscope.slides.problems import SlideProblem

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage


class _DicomLevel:
    """One wsidicom pyramid level as a lazily sliced YXS array."""

    def __init__(self, wsi: Any, level: Any) -> None:
        self.wsi, self.level = wsi, level
        self.shape = (int(level.size.height), int(level.size.width), 3)
        self.dtype = np.dtype(np.uint8)

    def __getitem__(self, index: tuple[slice, slice, slice]) -> np.ndarray:
        ys, xs, _ = index
        w, h = xs.stop - xs.start, ys.stop - ys.start
        region = self.wsi.read_region((xs.start, ys.start), self.level.level, (w, h))
        return np.asarray(region.convert("RGB"))


class DicomReader(ArrayPyramidReader):
    """A DICOM WSI series read with wsidicom (see :mod:`autoscope.slides.dicom`)."""

    def __init__(self, path: Path, wsi: Any, mpp_x: float | None = None) -> None:
        self.wsi = wsi
        levels = [(_DicomLevel(wsi, lvl), "YXS") for lvl in wsi.levels]
        try:
            mpp = mpp_x or float(wsi.levels[0].mpp.width)
        except Exception:  # noqa: BLE001 - no pixel spacing in the file
            mpp = mpp_x
        super().__init__(path, levels, mpp, "dicom (wsidicom)")

    def close(self) -> None:
        """Close the wsidicom handle (idempotent)."""
        if not self._closed:
            self._closed = True
            self.wsi.close()


def open_dicom(path: Path, mpp_x: float | None = None) -> DicomReader:
    """Open the DICOM WSI series holding `path` (a `.dcm` file or its folder) with wsidicom.

    Raises:
        SlideProblem: wsidicom finds no whole-slide series there or cannot read it.
    """
    import pydicom
    from wsidicom import WsiDicom

    if path.is_file():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as e:  # noqa: BLE001 - pydicom raises many types for a bad file
            raise SlideProblem(f"corrupt: not a readable DICOM file ({str(e)[:100]})") from None
        sop = str(ds.get("SOPClassUID", ""))
        if sop != WSI_SOP_CLASS:
            name = getattr(ds.get("SOPClassUID"), "name", "") or sop or "no SOP class"
            raise SlideProblem(
                f"unsupported: a DICOM {ds.get('Modality', '')} object ({name}), "
                "not a VL Whole Slide Microscopy image"
            )
    folder = path if path.is_dir() else path.parent
    try:
        wsi = WsiDicom.open(folder)
    except Exception as e:  # noqa: BLE001 - wsidicom raises many types for non-WSI DICOM
        first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise SlideProblem(
            f"unsupported: neither OpenSlide nor wsidicom can open this DICOM ({first})"
        ) from None
    return DicomReader(path, wsi, mpp_x)
