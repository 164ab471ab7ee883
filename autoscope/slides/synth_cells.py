"""Synthetic pyramidal H&E-like TIFFs with every nucleus drawn and known, for cell detection.

Tissue (a lobed region on glass) is pink stroma with a few tumour nests (`synth._blob_polygons`).
Nuclei are drawn so a detector has something real to learn: ``tumor`` large, pale violet and
irregular (packed in the nests), ``lymphocyte`` small, round and dark (scattered, denser round the
nests), ``fibroblast`` elongated and mid-dark (in the stroma, along the fibres). Beside the TIFF
the ground truth: QuPath GeoJSON points (``<stem>.points.geojson``), ImageScope XML nucleus
polygons (``<stem>.xml``, with ``MicronsPerPixel``), a CSV ``x,y,class`` (``<stem>.csv``) and an
instance mask (``<stem>.instances.png``, 16-bit ids, with ``<stem>.instances.csv`` ``id,class``),
all in level-0 pixels. Deterministic; the whole level 0 is drawn in memory (demo-sized slides).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from autoscope.atomic import atomic_file, write_text
from autoscope.slides.synth import _blob_polygons
from autoscope.slides.synth_pyramid import write_pyramid

CELL_CLASSES = {  # index -> (name, colour of overlays and GeoJSON, nucleus RGB)
    1: ("tumor", "#d62728", (150, 105, 185)),
    2: ("lymphocyte", "#2ca02c", (52, 28, 92)),
    3: ("fibroblast", "#ff7f0e", (100, 58, 140)),
}
RADIUS_UM = {
    1: (3.6, 4.8),
    2: (2.0, 2.6),
    3: (1.3, 1.7),
}  # nucleus radius range (fibroblast: minor)
SPACING_UM = {"nest": 11.0, "stroma": 12.0}  # jittered lattice pitch of candidate cell sites


@dataclass(frozen=True)
class CellSlide:
    """A written synthetic cell slide and its ground truth (level-0 pixels).

    Attributes:
        path: The pyramidal TIFF.
        cells: ``(N, 3)`` float array of x, y, class index (1 tumor, 2 lymphocyte, 3 fibroblast).
        outlines: One ``(K, 2)`` polygon per cell.
        points_path: QuPath GeoJSON of the nucleus centres (Point features with a class).
        xml_path: ImageScope XML of the nucleus polygons.
        csv_path: CSV ``x,y,class``.
        instances_path: 16-bit PNG of instance ids (0 background); classes in ``instances.csv``.
        width_px: Level-0 width.
        height_px: Level-0 height.
        mpp: Microns per pixel at level 0.
    """

    path: Path
    cells: np.ndarray
    outlines: list[np.ndarray]
    points_path: Path
    xml_path: Path
    csv_path: Path
    instances_path: Path
    width_px: int
    height_px: int
    mpp: float

    @property
    def names(self) -> list[str]:
        """The class name of every cell."""
        return [CELL_CLASSES[int(c)][0] for c in self.cells[:, 2]]


def _tissue_polygon(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One large lobed tissue outline leaving glass round the edges."""
    theta = np.linspace(0.0, 2 * np.pi, 128, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 5):
        r += rng.uniform(0.0, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    xy = np.stack([0.5 + 0.42 * r * np.cos(theta), 0.5 + 0.42 * r * np.sin(theta)], axis=1)
    return np.clip(xy, 0.02, 0.98) * [width, height]


def _background(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Pink fibrous stroma (float RGB) of `shape`: smooth noise stretched along x."""
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.standard_normal(shape), (1.0, 10.0), mode="wrap")
    w = np.clip(0.45 + 0.3 * (f - f.mean()) / (f.std() + 1e-9), 0, 1)[..., None]
    return (1 - w) * np.array([246.0, 196, 214]) + w * np.array([214.0, 122, 170])


def _sites(rng: np.random.Generator, width: int, height: int, pitch_px: float) -> np.ndarray:
    """A jittered hexagonal lattice of candidate sites over the slide (float ``(N, 2)``)."""
    ys = np.arange(pitch_px / 2, height, pitch_px * 0.866)
    pts = [
        np.stack([xs, np.full(len(xs), y)], axis=1)
        for i, y in enumerate(ys)
        for xs in [np.arange(pitch_px / 2 + (i % 2) * pitch_px / 2, width, pitch_px)]
    ]
    xy = np.concatenate(pts) if pts else np.zeros((0, 2))
    return xy + rng.uniform(-0.12, 0.12, xy.shape) * pitch_px


def _outline(rng: np.random.Generator, x: float, y: float, cls: int, mpp: float) -> np.ndarray:
    """The nucleus polygon of one cell: irregular (tumor), round (lymphocyte), elongated."""
    lo, hi = RADIUS_UM[cls]
    r0 = rng.uniform(lo, hi) / mpp
    theta = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
    if cls == 1:
        r = r0 * (
            1
            + sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5))
        )
        rx, ry = r, r
    elif cls == 2:
        rx = ry = r0 * (1 + 0.04 * np.cos(2 * theta + rng.uniform(0, 6.3)))
    else:
        rx, ry = r0 * rng.uniform(3.0, 3.8), r0
    a = rng.normal(0.0, 0.35) if cls == 3 else rng.uniform(0, np.pi)  # fibroblasts follow x
    px, py = rx * np.cos(theta), ry * np.sin(theta)
    return np.stack([x + px * np.cos(a) - py * np.sin(a), y + px * np.sin(a) + py * np.cos(a)], 1)


def _place_cells(
    rng: np.random.Generator, tissue_xy: np.ndarray, width: int, height: int, mpp: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cell centres with classes and outlines: nests packed with tumour cells, stroma sparser."""
    import shapely
    from shapely.geometry import Polygon

    tissue = Polygon(tissue_xy)
    nests = [Polygon(xy) for label, xy in _blob_polygons(rng, width, height) if label == 1]
    nest = shapely.intersection(shapely.union_all(nests), tissue) if nests else Polygon()
    near = shapely.difference(nest.buffer(30.0 / mpp), nest)  # the invasive margin: TILs
    cells: list[tuple[float, float, int]] = []
    for zone, pitch in SPACING_UM.items():
        xy = _sites(rng, width, height, pitch / mpp)
        pts = shapely.points(xy)
        inside = (
            shapely.contains(nest, pts)
            if zone == "nest"
            else (shapely.contains(tissue, pts) & ~shapely.contains(nest.buffer(6.0 / mpp), pts))
        )
        margin = shapely.contains(near, pts)
        u = rng.uniform(size=len(xy))
        for (x, y), ok, m, p in zip(xy, inside, margin, u, strict=True):
            if not ok:
                continue
            if zone == "nest":
                cls = 1 if p < 0.85 else (2 if p < 0.9 else 0)
            else:
                keep = 0.75 if m else 0.38
                cls = 0 if p > keep else (2 if p < keep * (0.7 if m else 0.35) else 3)
            if cls:
                cells.append((float(x), float(y), cls))
    arr = np.array(cells, float).reshape(-1, 3)
    outlines = [_outline(rng, x, y, int(c), mpp) for x, y, c in arr]
    return arr, outlines


def _render(
    rng: np.random.Generator,
    tissue_xy: np.ndarray,
    size: tuple[int, int],
    cells: np.ndarray,
    outlines: list,
) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 RGB and the instance-id mask (uint16) of the drawn nuclei."""
    width, height = size
    ids = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(ids)
    for i, poly in enumerate(outlines, start=1):
        draw.polygon([tuple(p) for p in poly], fill=i)
    inst = np.asarray(ids, np.int32)
    glass = Image.new("L", (width, height), 1)
    ImageDraw.Draw(glass).polygon([tuple(p) for p in tissue_xy], fill=0)
    bg = np.tile(_background(rng, (512, 512)), (-(-height // 512), -(-width // 512), 1))
    rgb = bg[:height, :width].copy()
    rgb[np.asarray(glass, bool)] = 238.0
    lut = np.array([[0, 0, 0]] + [CELL_CLASSES[int(c)][2] for c in cells[:, 2]], float)
    on = inst > 0
    grain = 1.0 + 0.12 * rng.standard_normal(int(on.sum()))[:, None]  # chromatin texture
    rgb[on] = lut[inst[on]] * grain
    rgb += 4.0 * rng.standard_normal(rgb.shape)
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.7)
    )
    return np.asarray(img), inst.astype(np.uint16)


def _feature(geom: dict, cls: int, object_type: str = "annotation") -> dict:
    name, color, _ = CELL_CLASSES[cls]
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    props = {"objectType": object_type, "classification": {"name": name, "color": rgb}}
    return {"type": "Feature", "geometry": geom, "properties": props}


def _xml(cells: np.ndarray, outlines: list[np.ndarray], mpp: float) -> str:
    """ImageScope XML: one annotation layer per class, one region per nucleus."""
    parts = [f'<Annotations MicronsPerPixel="{mpp:g}">']
    for cls, (name, _, _) in CELL_CLASSES.items():
        parts.append(f'<Annotation Id="{cls}" Name="{name}"><Regions>')
        for i in np.flatnonzero(cells[:, 2] == cls):
            vertices = "".join(f'<Vertex X="{x:.1f}" Y="{y:.1f}"/>' for x, y in outlines[i])
            parts.append(
                f'<Region Id="{i + 1}" Text="{name}"><Vertices>{vertices}</Vertices></Region>'
            )
        parts.append("</Regions></Annotation>")
    return "\n".join([*parts, "</Annotations>"]) + "\n"


def make_cell_slide(
    path: str | Path,
    *,
    seed: int = 0,
    width_px: int = 2048,
    height_px: int = 1536,
    mpp: float = 0.5,
    tile_px: int = 256,
    with_mpp: bool = True,
    jpeg_quality: int = 90,
) -> CellSlide:
    """Write a synthetic cell slide and its ground truth beside it.

    Args:
        path: Output ``.tif`` path; the annotation files take its stem.
        seed: Seed; the same arguments give the same files.
        width_px: Level-0 width.
        height_px: Level-0 height.
        mpp: Microns per pixel at level 0 (nuclei are drawn to their size in µm).
        tile_px: TIFF tile side (multiple of 16).
        with_mpp: False writes no resolution (the XML still carries ``MicronsPerPixel``).
        jpeg_quality: JPEG quality 1-100.

    Returns:
        The written :class:`CellSlide`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tissue_xy = _tissue_polygon(rng, width_px, height_px)
    cells, outlines = _place_cells(rng, tissue_xy, width_px, height_px, mpp)
    img, inst = _render(rng, tissue_xy, (width_px, height_px), cells, outlines)
    write_pyramid(path, img, mpp=mpp, tile_px=tile_px, with_mpp=with_mpp, jpeg_quality=jpeg_quality)
    stem = path.with_suffix("")
    out = {
        k: Path(f"{stem}{s}")
        for k, s in (
            ("points", ".points.geojson"),
            ("xml", ".xml"),
            ("csv", ".csv"),
            ("instances", ".instances.png"),
            ("classes", ".instances.csv"),
        )
    }
    points = [
        _feature({"type": "Point", "coordinates": [round(x, 2), round(y, 2)]}, int(c))
        for x, y, c in cells
    ]
    write_text(out["points"], json.dumps({"type": "FeatureCollection", "features": points}))
    write_text(out["xml"], _xml(cells, outlines, mpp))
    names = [CELL_CLASSES[int(c)][0] for c in cells[:, 2]]
    rows = [f"{x:.2f},{y:.2f},{n}" for (x, y, _), n in zip(cells, names, strict=True)]
    write_text(out["csv"], "\n".join(["x,y,class", *rows]) + "\n")
    ids = [f"{i},{n}" for i, n in enumerate(names, start=1)]
    write_text(out["classes"], "\n".join(["id,class", *ids]) + "\n")
    with atomic_file(out["instances"]) as tmp:
        Image.fromarray(inst).save(tmp, "PNG")
    return CellSlide(
        path,
        cells,
        outlines,
        out["points"],
        out["xml"],
        out["csv"],
        out["instances"],
        width_px,
        height_px,
        mpp,
    )
