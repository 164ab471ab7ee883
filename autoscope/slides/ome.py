"""OME-TIFF and OME-Zarr slides that OpenSlide cannot open, read through tifffile and zarr.

Both are pyramids of arrays: :class:`ArrayPyramidReader` is a :class:`TileReader` whose levels are
lazily sliced arrays (tifffile's zarr store for OME-TIFF, the multiscale datasets of OME-Zarr), so
patches, thumbnails and masks come from the one reader API. Only brightfield RGB uint8 images
are read; anything else (fluorescence channels, 16-bit) is a :class:`SlideProblem` naming why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.slides.problems import SlideProblem
from autoscope.slides.tile_reader import TileReader

ZARR_META = (".zattrs", ".zgroup", "zarr.json")


def is_ome_zarr(path: Path) -> bool:
    """Whether `path` is a zarr folder (an OME-Zarr slide is one)."""
    return path.is_dir() and any((path / m).is_file() for m in ZARR_META)


def is_ome_tiff(path: Path) -> bool:
    """Whether `path` is a TIFF file carrying OME-XML."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except Exception:  # noqa: BLE001 - not a readable TIFF: not OME-TIFF
        return False


def _rgb_view(arr: Any, axes: str, what: str) -> tuple[Any, str]:
    """Check an array is RGB uint8 with Y, X and a 3-sample axis; return it and its axes."""
    axes = axes.upper()
    shape = dict(zip(axes, arr.shape, strict=True))
    extra = [a for a in axes if a not in "YXSC" and shape[a] != 1]
    chan = "S" if "S" in axes and shape["S"] in (3, 4) else "C" if "C" in axes else ""
    if (
        extra
        or "Y" not in axes
        or "X" not in axes
        or not chan
        or shape[chan] not in (3, 4)
        or np.dtype(arr.dtype) != np.uint8
    ):
        raise SlideProblem(
            f"unsupported: {what} with axes {axes} {tuple(arr.shape)} {arr.dtype}; only "
            "brightfield RGB uint8 is read (fluorescence or multi-channel images: export RGB)"
        )
    return arr, axes


class ArrayPyramidReader(TileReader):
    """A slide whose levels are arrays (lazy: sliced on read), largest first.

    Args:
        path: The slide (file or folder).
        levels: Per level ``(array, axes)``: array-likes with ``shape``/``dtype``/slicing and
            axes letters (``Y``, ``X`` and ``S`` or ``C`` of size 3 or 4; others of size 1).
        mpp: Level-0 microns per pixel (None: unknown).
        vendor: The format's name for the registry.
    """

    def __init__(
        self,
        path: str | Path,
        levels: list[tuple[Any, str]],
        mpp: float | None,
        vendor: str,
        owner: Any = None,
    ) -> None:
        self.path, self.vendor = str(path), vendor
        self._owner = owner  # what holds the file open (a TiffFile), closed by close()
        self._levels = levels
        dims = []
        for arr, axes in levels:
            shape = dict(zip(axes, arr.shape, strict=True))
            dims.append((int(shape["X"]), int(shape["Y"])))
        self.level_dimensions = tuple(dims)
        w0 = dims[0][0]
        self.level_downsamples = tuple(w0 / w for w, _ in dims)
        self.mpp = mpp
        self.background = np.array([255, 255, 255], np.uint8)
        self._best: dict[float, tuple[int, float]] = {}
        self.fast_levels = [None] * len(dims)
        self._fd = None
        self._closed = False

    def _level_region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels ``[y, y+h) x [x, x+w)`` of a level (outside the image: white)."""
        arr, axes = self._levels[level]
        lw, lh = self.level_dimensions[level]
        out = np.full((max(h, 0), max(w, 0), 3), 255, np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lw), min(y + h, lh)
        if x1 <= x0 or y1 <= y0:
            return out
        index = tuple(
            slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else
            slice(None) if a in "SC" else 0
            for a in axes
        )  # fmt: skip
        kept = [a for a in axes if a in "YXSC"]
        block = np.asarray(arr[index])
        block = np.transpose(
            block, [kept.index(a) for a in ("Y", "X", "S" if "S" in kept else "C")]
        )
        out[y0 - y : y1 - y, x0 - x : x1 - x] = block[..., :3]
        return out

    def read_region(
        self, x0: int, y0: int, level: int, w: int, h: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """A (h, w, 3) uint8 region whose top-left is (x0, y0) level-0 px (see TileReader)."""
        ds = self.level_downsamples[level]
        rgb = self._level_region(level, math.floor(x0 / ds + 0.5), math.floor(y0 / ds + 0.5), w, h)
        if out is None:
            return rgb
        out[...] = rgb
        return out

    def _read_level(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        return self._level_region(level, x, y, w, h)

    def close(self) -> None:
        """Close the file behind the arrays (idempotent)."""
        if not self._closed and self._owner is not None:
            self._owner.close()
        self._closed = True


def open_ome_tiff(path: Path, mpp_x: float | None = None) -> ArrayPyramidReader:
    """Open an OME-TIFF's first image series (its pyramid levels) with tifffile.

    Raises:
        SlideProblem: not RGB uint8, or tifffile cannot read it.
    """
    import tifffile
    import zarr

    tif = None
    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        levels = []
        for i, lvl in enumerate(series.levels):
            store = tif.aszarr(series=0, level=i)
            levels.append(_rgb_view(zarr.open(store, mode="r"), lvl.axes, "an OME-TIFF"))
        mpp = mpp_x or _ome_xml_mpp(tif.ome_metadata or "")
    except Exception as e:
        if tif is not None:
            tif.close()
        if isinstance(e, SlideProblem):
            raise
        why = f"corrupt: tifffile cannot read the OME-TIFF ({str(e)[:100]})"
        raise SlideProblem(why) from None
    return ArrayPyramidReader(path, levels, mpp, "ome-tiff", owner=tif)


def _ome_xml_mpp(xml: str) -> float | None:
    """PhysicalSizeX of the first OME Pixels element, in micrometres (None if absent)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("Pixels") and el.get("PhysicalSizeX"):
            unit = el.get("PhysicalSizeXUnit", "µm")
            scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
            return float(el.get("PhysicalSizeX")) * scale if scale else None
    return None


def _multiscales(group: Any) -> dict:
    attrs = dict(group.attrs)
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not ms:
        raise SlideProblem("unsupported: a zarr folder without OME-Zarr 'multiscales' metadata")
    return ms[0]


def open_ome_zarr(path: Path, mpp_x: float | None = None) -> ArrayPyramidReader:
    """Open an OME-Zarr image (its first multiscale pyramid) with zarr.

    Raises:
        SlideProblem: no multiscales, not RGB uint8, or zarr cannot read it.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        ms = _multiscales(group)
        names = [a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", "tczyx")]
        axes = "".join(n[0].upper() for n in names)
        levels = [_rgb_view(group[d["path"]], axes, "an OME-Zarr image") for d in ms["datasets"]]
        mpp = mpp_x or _zarr_mpp(ms, names)
    except SlideProblem:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure: say what zarr said
        raise SlideProblem(
            f"corrupt: zarr cannot read the OME-Zarr folder ({str(e)[:100]})"
        ) from None
    return ArrayPyramidReader(path, levels, mpp, "ome-zarr")


def _zarr_mpp(ms: dict, names: list[str]) -> float | None:
    """Level-0 x scale in micrometres from the coordinate transformations (None if unknown)."""
    axes = ms.get("axes") or []
    unit = next((a.get("unit") for a in axes if isinstance(a, dict) and a.get("name") == "x"), None)
    for t in ms["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale" and "x" in names:
            scale = {None: 1.0, "micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3}.get(unit)
            return float(t["scale"][names.index("x")]) * scale if scale else None
    return None


def folder_bytes(path: Path) -> int:
    """Total size of the files under a folder."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def facts(reader: ArrayPyramidReader, path: Path, fmt: str) -> dict[str, Any]:
    """Registry facts of an array-pyramid slide (the same keys as `read_slide_facts`)."""
    return {
        "vendor": reader.vendor,
        "format": fmt,
        "level_count": reader.level_count,
        "level_dimensions": json.dumps([list(d) for d in reader.level_dimensions]),
        "level_downsamples": json.dumps([round(d, 4) for d in reader.level_downsamples]),
        "width_px": reader.level_dimensions[0][0],
        "height_px": reader.level_dimensions[0][1],
        "file_mpp_x": reader.mpp,
        "file_mpp_y": reader.mpp,
        "objective_power": None,
        "associated_images": "[]",
        "file_bytes": folder_bytes(path) if path.is_dir() else path.stat().st_size,
    }
