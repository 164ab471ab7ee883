"""What an annotation file holds: labelled regions and points in level-0 pixels.

Shared by every annotation reader (`annotations` for GeoJSON and CSV, `xml_annotations` for
ASAP / ImageScope XML), so the readers depend on this module and not on each other.
"""

from __future__ import annotations

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
        n = len({*shells[0]}) if shells else 0
        if shells and n < 3:  # shapely's own message would not say what is wrong
            raise UserError(
                f"{path}: {feature} ('{label}') has {n} distinct vertices (a polygon needs 3)"
            )
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
