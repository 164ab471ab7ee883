"""Annotation files -> validated regions and points in level-0 pixels.

Readers: QuPath GeoJSON (FeatureCollection, a list of features or one feature; Polygon,
MultiPolygon, Point, MultiPoint with `properties.classification.name`), ASAP / ImageScope XML
(see `xml_annotations`) and point CSVs (`x,y,class`). Every problem is a `UserError` that names
the file and the feature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscope.errors import UserError

UNCLASSIFIED = "Unclassified"  # class name of features without a classification


@dataclass(frozen=True)
class Region:
    """A labelled polygon (shapely Polygon or MultiPolygon) in level-0 pixels."""

    label: str
    geometry: Any
    feature: str


@dataclass(frozen=True)
class CellPoint:
    """A labelled point (a cell) in level-0 pixels."""

    label: str
    x: float
    y: float
    feature: str


@dataclass
class Annotations:
    """Everything one annotation file holds."""

    path: Path
    regions: list[Region] = field(default_factory=list)
    points: list[CellPoint] = field(default_factory=list)

    def check_inside(self, width_px: int, height_px: int, tolerance_px: float = 1.0) -> None:
        """Fail when a region or point lies (partly) outside a slide of the given size."""
        for r in self.regions:
            x0, y0, x1, y1 = r.geometry.bounds
            if (
                x0 < -tolerance_px
                or y0 < -tolerance_px
                or x1 > width_px + tolerance_px
                or (y1 > height_px + tolerance_px)
            ):
                raise UserError(
                    f"{self.path}: {r.feature} lies outside the slide ({width_px}x{height_px} px): "
                    f"bounds ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})"
                )
        for p in self.points:
            if not (0 <= p.x <= width_px and 0 <= p.y <= height_px):
                raise UserError(
                    f"{self.path}: {p.feature} at ({p.x:.0f}, {p.y:.0f}) lies outside the slide "
                    f"({width_px}x{height_px} px)"
                )


def make_region(path: Path, feature: str, label: str, rings: list[list[list[Any]]]) -> Region:
    """Build and validate a polygon (exterior ring first, holes after) or fail with one line."""
    import shapely
    from shapely.geometry import Polygon

    try:
        shells = [[(float(x), float(y)) for x, y, *_ in ring] for ring in rings]
        poly = Polygon(shells[0], shells[1:]) if shells else Polygon()
    except (TypeError, ValueError, IndexError) as e:
        raise UserError(f"{path}: {feature} has malformed coordinates ({e})") from None
    return check_polygon(path, feature, label, poly, shapely)


def check_polygon(path: Path, feature: str, label: str, geom: Any, shapely: Any) -> Region:
    """Reject empty, degenerate and self-intersecting polygons."""
    if geom.is_empty:
        raise UserError(f"{path}: {feature} ('{label}') is an empty polygon")
    if not geom.is_valid:
        why = shapely.is_valid_reason(geom)
        raise UserError(f"{path}: {feature} ('{label}') is an invalid polygon: {why}")
    if geom.area <= 0:
        raise UserError(f"{path}: {feature} ('{label}') is an empty polygon (no area)")
    return Region(label, geom, feature)


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
    """Read a QuPath-style GeoJSON file of regions and/or points."""
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
        from autoscope.datasets.xml_annotations import read_xml

        return read_xml(p)
    if suffix == ".csv":
        return read_points_csv(p)
    raise UserError(f"{p}: unsupported annotation format (use .geojson, .json, .xml or .csv)")
