"""ASAP and Aperio ImageScope XML annotations -> `Annotations` (level-0 pixels).

ASAP: `<ASAP_Annotations><Annotations><Annotation Type="Polygon|Rectangle|Spline|Dot|PointSet"
PartOfGroup="tumor"><Coordinates><Coordinate Order X Y/>`. ImageScope: `<Annotations><Annotation
Name=...><Regions><Region Text=... NegativeROA="0|1"><Vertices><Vertex X Y/>`; negative regions
are cut out of the regions of their annotation layer.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from autoscope.datasets.annotation_types import (
    UNCLASSIFIED,
    Annotations,
    CellPoint,
    Region,
    check_polygon,
    make_region,
)
from autoscope.errors import UserError

ASAP_POINT_TYPES = {"dot", "pointset"}  # ASAP annotation types that are points, not regions


def _xy(path: Path, feature: str, el: ET.Element, tag: str) -> list[tuple[float, float]]:
    nodes = sorted(el.iter(tag), key=lambda n: float(n.get("Order", 0)))
    try:
        return [(float(n.attrib["X"]), float(n.attrib["Y"])) for n in nodes]
    except (KeyError, ValueError) as e:
        raise UserError(f"{path}: {feature} has a malformed {tag} ({e})") from None


def _read_asap(path: Path, root: ET.Element) -> Annotations:
    out = Annotations(path)
    for i, ann in enumerate(root.iter("Annotation")):
        label = ann.get("PartOfGroup") or ann.get("Name") or UNCLASSIFIED
        if label == "None":
            label = UNCLASSIFIED
        feature = f"annotation {i} ('{ann.get('Name', '')}')"
        xy = _xy(path, feature, ann, "Coordinate")
        if (ann.get("Type") or "").lower() in ASAP_POINT_TYPES:
            out.points += [CellPoint(label, x, y, f"{feature}#{j}") for j, (x, y) in enumerate(xy)]
        else:
            out.regions.append(make_region(path, feature, label, [xy]))
    return out


def _read_imagescope(path: Path, root: ET.Element) -> Annotations:
    import shapely

    out = Annotations(path)
    for i, ann in enumerate(root.iter("Annotation")):
        layer = ann.get("Name") or ""
        positive: list[Region] = []
        negative = []
        for j, reg in enumerate(ann.iter("Region")):
            label = reg.get("Text") or layer or UNCLASSIFIED
            feature = f"annotation {i} region {j} (id {reg.get('Id', j)})"
            xy = _xy(path, feature, reg, "Vertex")
            if len(xy) == 1:
                out.points.append(CellPoint(label, xy[0][0], xy[0][1], feature))
                continue
            region = make_region(path, feature, label, [xy])
            (negative if reg.get("NegativeROA") == "1" else positive).append(region)
        if negative:
            holes = shapely.union_all([r.geometry for r in negative])
            positive = [
                check_polygon(path, r.feature, r.label, r.geometry.difference(holes), shapely)
                for r in positive
            ]
        out.regions += positive
    return out


def read_xml(path: Path) -> Annotations:
    """Read an ASAP or ImageScope XML annotation file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise UserError(f"{path}: malformed XML ({e})") from None
    if root.tag == "ASAP_Annotations":
        return _read_asap(path, root)
    if root.tag == "Annotations":
        return _read_imagescope(path, root)
    raise UserError(
        f"{path}: unknown XML annotation format (root <{root.tag}>; ASAP or ImageScope)"
    )
