"""Vector overlays of a slide (GeoJSON objects): raster tiles when zoomed out, vectors when in.

A `FeatureLayer` holds a FeatureCollection's objects (QuPath-style: `objectType`,
`classification {name, color}`) with their level-0 bounding boxes as arrays, so choosing the
objects of a tile or of the visible area is one vectorised test. A tile draws objects smaller
than a few pixels as dots (numpy, no per-object call) and larger ones as polygons (PIL), so a
zoomed-out tile over 100,000 cells costs milliseconds.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

DOT_PX = 3.0  # objects smaller than this (tile pixels) are drawn as dots
FILL_ALPHA = 90  # polygon fill opacity (the page's slider scales the whole layer)
DEFAULT_RGB = (255, 215, 0)  # an object without a classification colour


def parse_color(value: Any) -> tuple[int, int, int] | None:
    """An RGB triple from `#rrggbb`, `[r, g, b]` or QuPath's packed integer (None: unknown)."""
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if isinstance(value, (list, tuple)) and len(value) >= 3:
        return tuple(int(v) & 255 for v in value[:3])  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool):
        v = value & 0xFFFFFF
        return (v >> 16) & 255, (v >> 8) & 255, v & 255
    return None


def _rings(geom: dict[str, Any]) -> list[np.ndarray]:
    """The outer rings (or point sets) of a geometry as (n, 2) float arrays."""
    kind, coords = geom.get("type"), geom.get("coordinates")
    if kind == "Point":
        return [np.asarray([coords], float)]
    if kind in ("MultiPoint", "LineString"):
        return [np.asarray(coords, float)]
    if kind == "Polygon":
        return [np.asarray(coords[0], float)] if coords else []
    if kind == "MultiPolygon":
        return [np.asarray(p[0], float) for p in coords if p]
    if kind == "GeometryCollection":
        return [r for g in geom.get("geometries", []) for r in _rings(g)]
    return []


def read_geojson(path: Path) -> dict[str, Any]:
    """A `.geojson` or `.geojson.gz` file (a FeatureCollection, a list or a single Feature)."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    data = json.loads(raw)
    if isinstance(data, list):
        return {"type": "FeatureCollection", "features": data}
    if data.get("type") == "Feature":
        return {"type": "FeatureCollection", "features": [data]}
    return data


@dataclass
class FeatureLayer:
    """Objects of one overlay with level-0 boxes, colours and kinds (`point` or `shape`)."""

    features: list[dict[str, Any]]
    rings: list[list[np.ndarray]]
    boxes: np.ndarray  # (n, 4) float64: x0, y0, x1, y1 (level-0 px)
    colors: np.ndarray  # (n, 3) uint8
    points: np.ndarray  # (n,) bool: a point object (drawn as a dot or a small circle)

    @classmethod
    def from_collection(
        cls, fc: dict[str, Any], class_colors: dict[str, str] | None = None
    ) -> FeatureLayer:
        """Index a FeatureCollection; colours from the classification, else `class_colors`."""
        known = {k: parse_color(v) for k, v in (class_colors or {}).items()}
        feats, rings, boxes, colors, points = [], [], [], [], []
        for f in fc.get("features") or []:
            geom = f.get("geometry") or {}
            rs = [r for r in _rings(geom) if r.ndim == 2 and len(r)]
            if not rs:
                continue
            allp = np.concatenate(rs)
            props = f.get("properties") or {}
            cl = props.get("classification") or {}
            rgb = parse_color(cl.get("color")) or known.get(str(cl.get("name"))) or DEFAULT_RGB
            feats.append(f)
            rings.append(rs)
            boxes.append((*allp.min(0)[:2], *allp.max(0)[:2]))
            colors.append(rgb)
            points.append(geom.get("type") in ("Point", "MultiPoint"))
        return cls(
            feats,
            rings,
            np.asarray(boxes, float).reshape(-1, 4),
            np.asarray(colors, np.uint8).reshape(-1, 3),
            np.asarray(points, bool),
        )

    def __len__(self) -> int:
        return len(self.features)

    def within(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Indices of the objects whose box meets the level-0 rectangle."""
        b = self.boxes
        hit = (b[:, 2] >= x0) & (b[:, 0] <= x1) & (b[:, 3] >= y0) & (b[:, 1] <= y1)
        return np.flatnonzero(hit)

    def vectors(self, x0: float, y0: float, x1: float, y1: float, limit: int) -> dict[str, Any]:
        """The objects in the visible area as GeoJSON (`truncated` when over `limit`)."""
        idx = self.within(x0, y0, x1, y1)
        out: dict[str, Any] = {"type": "FeatureCollection", "count": int(len(idx))}
        out["truncated"] = bool(len(idx) > limit)
        keep = idx[:limit] if not out["truncated"] else idx[:0]
        out["features"] = [
            {
                "type": "Feature",
                "geometry": self.features[i]["geometry"],
                "properties": {
                    "color": "#" + "".join(f"{int(c):02x}" for c in self.colors[i]),
                    "name": str(
                        (
                            (self.features[i].get("properties") or {}).get("classification") or {}
                        ).get("name", "")
                    ),
                },
            }
            for i in keep
        ]
        return out

    def render(self, x0: float, y0: float, scale: float, w_px: int, h_px: int) -> np.ndarray:
        """An RGBA tile: level-0 origin (x0, y0), `scale` level-0 px per tile px."""
        idx = self.within(x0, y0, x0 + w_px * scale, y0 + h_px * scale)
        rgba = np.zeros((h_px, w_px, 4), np.uint8)
        if not len(idx):
            return rgba
        b = self.boxes[idx]
        size_px = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / scale
        small = size_px < DOT_PX
        if small.any():
            s_idx = idx[small]
            cx = ((b[small, 0] + b[small, 2]) / 2 - x0) / scale
            cy = ((b[small, 1] + b[small, 3]) / 2 - y0) / scale
            px = np.clip(cx.astype(int), 0, w_px - 2)
            py = np.clip(cy.astype(int), 0, h_px - 2)
            for dy in (0, 1):
                for dx in (0, 1):
                    rgba[py + dy, px + dx, :3] = self.colors[s_idx]
                    rgba[py + dy, px + dx, 3] = 255
        big = idx[~small]
        if len(big):
            img = Image.fromarray(rgba, "RGBA")
            draw = ImageDraw.Draw(img, "RGBA")
            for i in big:
                rgb = tuple(int(c) for c in self.colors[i])
                for ring in self.rings[i]:
                    pts = (ring[:, :2] - (x0, y0)) / scale
                    if self.points[i]:
                        r = 3
                        for px_, py_ in pts:
                            draw.ellipse((px_ - r, py_ - r, px_ + r, py_ + r), fill=(*rgb, 255))
                    elif len(pts) >= 3:
                        flat = [tuple(p) for p in pts]
                        draw.polygon(flat, fill=(*rgb, FILL_ALPHA), outline=(*rgb, 255))
                    else:
                        draw.line([tuple(p) for p in pts], fill=(*rgb, 255), width=2)
            rgba = np.asarray(img)
        return rgba


def patches_collection(manifest: Any, patch0_px: dict[str, float], colors: dict[str, str]) -> dict:
    """The patches a dataset cut from one slide as square annotations (class = label).

    Args:
        manifest: the dataset manifest rows of the slide (x, y level-0, label or label_idx, split).
        patch0_px: level-0 side of a patch per row's `mpp` key (`str(mpp)`).
        colors: class name -> colour.
    """
    feats = []
    labels = manifest["label"] if "label" in manifest.columns else manifest["label_idx"]
    splits = manifest["split"] if "split" in manifest.columns else [""] * len(manifest)
    for x, y, lab, mpp, split in zip(
        manifest["x"], manifest["y"], labels, manifest["mpp"], splits, strict=True
    ):
        side = patch0_px.get(str(mpp), 0.0)
        x0, y0, x1, y1 = float(x), float(y), float(x) + side, float(y) + side
        feats.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                },
                "properties": {
                    "objectType": "annotation",
                    "split": str(split),
                    "classification": {"name": str(lab), "color": colors.get(str(lab))},
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def synthetic_cells(n: int, width_px: int, height_px: int, seed: int = 0) -> dict[str, Any]:
    """`n` cell detections (points, two classes) spread over a slide: for tests and benchmarks."""
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(0, width_px, n), rng.uniform(0, height_px, n)
    cls = [("tumor", [214, 39, 40]), ("lymphocyte", [44, 160, 44])]
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": cls[i % 2][0], "color": cls[i % 2][1]},
                },
            }
            for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        ],
    }
