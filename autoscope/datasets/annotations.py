"""Annotation files -> validated regions and points in level-0 pixels.

Readers: QuPath GeoJSON (FeatureCollection, a list of features or one feature; Polygon,
MultiPolygon, Point, MultiPoint with `properties.classification.name`), ASAP / ImageScope XML
(see `xml_annotations`) and point CSVs (`x,y,class`). Every problem is a `UserError` that names
the file and the feature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoscope.datasets.annotation_types import (
    UNCLASSIFIED,
    Annotations,
    CellPoint,
    Region,
    check_polygon,
    make_region,
)
from autoscope.datasets.xml_annotations import read_xml
from autoscope.errors import UserError

__all__ = [
    "UNCLASSIFIED",
    "Annotations",
    "CellPoint",
    "Region",
    "check_polygon",
    "make_region",
    "read_annotations",
    "read_geojson",
    "read_points_csv",
]


def _class_name(props: dict[str, Any]) -> str:
    cls = props.get("classification")
    if isinstance(cls, dict):
        if cls.get("name"):
            return str(cls["name"])
        if cls.get("names"):
            return ": ".join(str(n) for n in cls["names"])
    if isinstance(cls, str) and cls:
        return cls
    return str(props.get("class") or props.get("label") or UNCLASSIFIED)


def _features(path: Path, doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list):
            raise UserError(f"{path}: malformed GeoJSON: 'features' is not a list")
        return feats
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    raise UserError(
        f"{path}: malformed GeoJSON: expected a FeatureCollection or a list of features"
    )


def read_geojson(path: Path) -> Annotations:
    """Read a QuPath-style GeoJSON file of regions and/or points.

    Raises:
        UserError: malformed, nested too deeply, or a bad feature (file and feature named).
    """
    try:
        return _read_geojson(path)
    except RecursionError:
        raise UserError(
            f"{path}: malformed GeoJSON (nested too deeply: arrays or objects inside each other "
            "beyond Python's recursion limit; a GeoJSON polygon needs 3 levels of coordinates)"
        ) from None


def _read_geojson(path: Path) -> Annotations:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: malformed GeoJSON ({e})") from None
    out = Annotations(path)
    for i, feat in enumerate(_features(path, doc)):
        if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
            raise UserError(f"{path}: feature {i} is malformed (no geometry object)")
        props = feat.get("properties") or {}
        fid = f"feature {i}" + (f" (id {feat['id']})" if feat.get("id") else "")
        label = _class_name(props if isinstance(props, dict) else {})
        geom = feat["geometry"]
        kind, coords = geom.get("type"), geom.get("coordinates")
        if not isinstance(coords, list):
            raise UserError(f"{path}: {fid} has no coordinates")
        if kind == "Polygon":
            out.regions.append(make_region(path, fid, label, coords))
        elif kind == "MultiPolygon":
            regions = [make_region(path, f"{fid} part {j}", label, p) for j, p in enumerate(coords)]
            out.regions.extend(regions)
        elif kind in ("Point", "MultiPoint"):
            pts = [coords] if kind == "Point" else coords
            for j, pt in enumerate(pts):
                try:
                    out.points.append(CellPoint(label, float(pt[0]), float(pt[1]), f"{fid}#{j}"))
                except (TypeError, ValueError, IndexError):
                    raise UserError(f"{path}: {fid} has a malformed point {pt!r}") from None
        else:
            raise UserError(f"{path}: {fid} has unsupported geometry '{kind}' (Polygon/Point only)")
    return out


def read_points_csv(path: Path) -> Annotations:
    """Read a CSV of points with columns `x,y,class` (level-0 pixels)."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable CSV ({e})") from None
    cols = {c.lower().strip(): c for c in df.columns}
    label_col = cols.get("class") or cols.get("label")
    if "x" not in cols or "y" not in cols or label_col is None:
        raise UserError(f"{path}: a point CSV needs columns x,y,class (has {list(df.columns)})")
    out = Annotations(path)
    for i, (x, y, c) in enumerate(zip(df[cols["x"]], df[cols["y"]], df[label_col], strict=True)):
        try:
            out.points.append(CellPoint(str(c), float(x), float(y), f"row {i + 2}"))
        except (TypeError, ValueError):
            raise UserError(f"{path}: row {i + 2} has a non-numeric x/y ({x!r}, {y!r})") from None
    return out


def read_annotations(path: str | Path) -> Annotations:
    """Read any supported annotation file, chosen by its suffix."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"annotation file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in (".geojson", ".json"):
        return read_geojson(p)
    if suffix == ".xml":
        return read_xml(p)
    if suffix == ".csv":
        return read_points_csv(p)
    raise UserError(f"{p}: unsupported annotation format (use .geojson, .json, .xml or .csv)")
