"""Cells of a detection source, in level-0 pixels: points, nucleus polygons, instance masks.

- `points` / `geojson` / `xml`: any annotation file `autoscope.datasets.annotations` reads;
  a point is a cell, a polygon is a nucleus (its centroid the cell, its outline kept);
- `instances`: a label image (PNG/TIFF, 0 background, one id per nucleus; level 0 or an integer
  downsample of it) with `<mask stem>.csv` `id,class` beside it (`slide_000.instances.png` ->
  `slide_000.instances.csv`); the file stem before the first dot names the slide.

An ImageScope XML's `MicronsPerPixel` gives the MPP of a slide registered without one.
"""

from __future__ import annotations

import glob as globlib
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from autoscope.datasets import plan as planning
from autoscope.datasets.annotations import read_annotations
from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.spec import SourceSpec
from autoscope.errors import UserError

CELL_TYPES = ("points", "geojson", "xml", "instances")  # detection source kinds
MASK_SUFFIXES = (".png", ".tif", ".tiff")
CELL_COLUMNS = ["slide_id", "slide", "x", "y", "label_idx", "outline", "source"]


def source_files(src: SourceSpec, where: str) -> list[tuple[str | None, Path]]:
    """(slide ref or None, file) pairs of a detection source."""
    if src.type not in CELL_TYPES:
        raise UserError(
            f"{where}.type '{src.type}': a detection dataset takes {', '.join(CELL_TYPES)}"
        )
    if src.type != "instances":
        return planning.annotation_files(src, where)
    if src.files:
        return [(str(k), Path(str(v))) for k, v in dict(src.files).items()]
    pattern = src.glob or (
        str(Path(src.path or "") / "*.instances.*")
        if src.path and Path(src.path).is_dir()
        else None
    )
    if pattern:
        hits = sorted(Path(p) for p in globlib.glob(pattern, recursive=True))
        hits = [p for p in hits if p.suffix.lower() in MASK_SUFFIXES]
        if not hits:
            raise UserError(
                f"{where}: '{pattern}' matches no instance masks ({'/'.join(MASK_SUFFIXES)})"
            )
        return [(None, p) for p in hits]
    if src.path:
        return [(src.slide, Path(src.path))]
    raise UserError(f"{where} needs one of path, glob or files")


def slide_row(registry: pd.DataFrame, ref: str, path: Path) -> pd.Series:
    """The registry row of a source file's slide; an XML's `MicronsPerPixel` fills a missing MPP.

    The registry frame is updated in place (its `mpp_x`, status), so the shards are cut at it.

    Raises:
        UserError: unknown slide, or neither the slide nor the XML has an MPP.
    """
    name = ref if ref in set(registry["name"]) else ref.split(".")[0]
    hits = registry[registry["name"] == name]
    if len(hits) == 1 and hits.iloc[0]["status"] == "no_mpp":
        i = hits.index[0]
        mpp = xml_mpp(path) if path.suffix.lower() == ".xml" else None
        if mpp is None:
            raise UserError(
                f"{path}: no MicronsPerPixel in the file and slide '{hits.iloc[0]['name']}' has no "
                "MPP either (give it in slides.metadata or the XML)"
            )
        registry.loc[i, ["mpp_x", "mpp_y", "mpp_source", "status"]] = [mpp, mpp, "annotation", "ok"]
    return planning.find_slide(registry, name, str(path))


def xml_mpp(path: Path) -> float | None:
    """The `MicronsPerPixel` attribute of an ImageScope XML root (None when absent or 0)."""
    try:
        value = ET.parse(path).getroot().get("MicronsPerPixel")
        mpp = float(value) if value else 0.0
    except (ET.ParseError, OSError, ValueError):
        return None
    return mpp if mpp > 0 and math.isfinite(mpp) else None


def _from_annotations(
    path: Path, mapper: ClassMapper
) -> list[tuple[float, float, int, str | None]]:
    ann = read_annotations(path)
    out = []
    for p in ann.points:
        idx = mapper.index(p.label, f"{path}: {p.feature}")
        if idx is not None:
            out.append((p.x, p.y, idx, None))
    for r in ann.regions:
        idx = mapper.index(r.label, f"{path}: {r.feature}")
        if idx is not None:
            c = r.geometry.centroid
            out.append((c.x, c.y, idx, r.geometry.wkt))
    return out


def _from_instances(
    path: Path, mapper: ClassMapper, width: int
) -> list[tuple[float, float, int, str | None]]:
    from PIL import Image
    from scipy import ndimage

    table = path.with_suffix(".csv")
    if not table.is_file():
        raise UserError(f"{path}: instance mask without its class table {table.name} (id,class)")
    try:
        ids = np.asarray(Image.open(path)).astype(np.int64)
        classes = pd.read_csv(table)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable instance mask or class table ({e})") from None
    if ids.ndim != 2 or not {"id", "class"} <= set(classes.columns):
        raise UserError(
            f"{path}: an instance mask is one 2-D id image, its table has columns id,class"
        )
    scale = width / ids.shape[1]
    labels = dict(zip(classes["id"].astype(int), classes["class"].astype(str), strict=True))
    present = np.unique(ids[ids > 0])
    missing = [int(i) for i in present if int(i) not in labels]
    if missing:
        raise UserError(f"{table}: instance id {missing[0]} of the mask has no class")
    centres = ndimage.center_of_mass(np.ones_like(ids), ids, present) if len(present) else []
    out = []
    for i, (cy, cx) in zip(present, centres, strict=True):
        idx = mapper.index(labels[int(i)], f"{table}: id {int(i)}")
        if idx is not None:
            out.append(((cx + 0.5) * scale, (cy + 0.5) * scale, idx, None))
    return out


def read_cells(
    src: SourceSpec, registry: pd.DataFrame, mapper: ClassMapper, where: str
) -> pd.DataFrame:
    """Every cell of a source (columns `CELL_COLUMNS`), checked to lie on its slide.

    Raises:
        UserError: a bad file, an unknown class, a cell outside the slide.
    """
    frames = []
    for ref, path in source_files(src, where):
        row = slide_row(registry, ref or path.name.split(".")[0], path)
        w, h = int(row["width_px"]), int(row["height_px"])
        if src.type == "instances":
            cells = _from_instances(path, mapper, w)
        else:
            cells = _from_annotations(path, mapper)
        for x, y, _, _ in cells:
            if not (0 <= x <= w and 0 <= y <= h):
                raise UserError(
                    f"{path}: a cell at ({x:.0f}, {y:.0f}) lies outside the slide ({w}x{h} px)"
                )
        if cells:
            f = pd.DataFrame(cells, columns=["x", "y", "label_idx", "outline"])
            f.insert(0, "slide", row["name"])
            f.insert(0, "slide_id", row["slide_id"])
            f["source"] = str(path)
            frames.append(f[CELL_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CELL_COLUMNS)
