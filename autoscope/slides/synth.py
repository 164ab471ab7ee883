"""Synthetic pyramidal tiled JPEG TIFFs with ground truth, for tests, the demo and benchmarks.

A slide is glass with a few smooth tissue regions, each ``tumor`` (class 1: dense purple nuclei)
or ``stroma`` (class 2: pink fibres), optionally a pen stroke on glass. Beside the TIFF sit the
label mask (PNG, 0 background / 1 tumor / 2 stroma) and a QuPath-style GeoJSON (level-0 px).
Deterministic, rendered band by band (30k px fit). CLI: ``python -m autoscope.slides.synth OUT``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from autoscope.atomic import atomic_file, write_text

CLASSES = {1: ("tumor", [214, 39, 40]), 2: ("stroma", [31, 119, 180])}
LABEL_DS = 4  # level-0 pixels per cell of the label map that drives rendering
TEX_PX = 512  # period of the tiled textures (level-0 pixels)
SUBSAMPLING = {"420": (2, 2), "444": (1, 1)}


@dataclass(frozen=True)
class SynthSlide:
    """A written synthetic slide and its ground truth.

    Attributes:
        path: The pyramidal TIFF.
        mask_path: Label mask PNG (0 background, 1 tumor, 2 stroma).
        geojson_path: QuPath-style GeoJSON of the labelled regions, level-0 pixels.
        label_mask: The label mask as an array (uint8, ``mask_downsample`` coarser than level 0).
        mask_downsample: Level-0 pixels per mask pixel.
        width_px: Level-0 width.
        height_px: Level-0 height.
        mpp: Microns per pixel at level 0 as drawn (also when the file stores none).
        pen: Whether a pen stroke was drawn on the glass.
    """

    path: Path
    mask_path: Path
    geojson_path: Path
    label_mask: np.ndarray
    mask_downsample: int
    width_px: int = 0
    height_px: int = 0
    mpp: float = 0.5
    pen: bool = False


def _blob_polygons(
    rng: np.random.Generator, width: int, height: int, avoid: np.ndarray | None = None
) -> list[tuple[int, np.ndarray]]:
    """Random smooth, non-overlapping star-shaped ``(label, xy)`` regions, both classes present.

    ``avoid`` is an optional level-0 polyline (the pen stroke) the regions keep clear of.
    """
    from shapely.geometry import LineString, Polygon

    short = min(width, height)
    n_blobs = int(rng.integers(4, 7))
    first = int(rng.integers(1, 3))
    placed: list[tuple[int, np.ndarray]] = []
    shapes: list = [] if avoid is None else [LineString(avoid)]
    theta = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
    for _ in range(200):
        if len(placed) == n_blobs:
            break
        radius = short * rng.uniform(0.09, 0.17)
        cx = rng.uniform(radius * 1.2, width - radius * 1.2)
        cy = rng.uniform(radius * 1.2, height - radius * 1.2)
        r = np.ones_like(theta)
        for k in range(2, 6):  # a few low harmonics: smooth, lobed outlines
            r += rng.uniform(0.0, 0.18 / (k - 1)) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        xy = np.stack([cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)], axis=1)
        xy = np.round(np.clip(xy, 1, [width - 1, height - 1]), 1)
        poly = Polygon(xy)
        if not poly.is_valid or any(poly.distance(s) < short * 0.03 for s in shapes):
            continue
        shapes.append(poly)
        placed.append((1 + (first - 1 + len(placed)) % 2, xy))
    return placed


def rasterize(
    regions: list[tuple[int, np.ndarray]], shape: tuple[int, int], downsample: float
) -> np.ndarray:
    """Label map (uint8, ``shape`` rows x cols) of ``(label, xy)`` level-0 regions, ``downsample``.

    A pixel takes a region's label when its centre lies inside the polygon (exact test).
    """
    from skimage.draw import polygon

    out = np.zeros(shape, np.uint8)
    for label, xy in regions:
        rr, cc = polygon(xy[:, 1] / downsample - 0.5, xy[:, 0] / downsample - 0.5, shape)
        out[rr, cc] = label
    return out


def _render_label(
    regions: list, shape: tuple[int, int], pen_xy: np.ndarray | None, pen_px: float
) -> np.ndarray:
    """The label map that drives rendering (``LABEL_DS``), pen as label 3 on glass (PIL: fast)."""
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for label, xy in regions:
        draw.polygon([tuple(p) for p in (xy / LABEL_DS - 0.5)], fill=int(label))
    out = np.asarray(img).copy()
    if pen_xy is not None:
        pen = Image.new("L", (shape[1], shape[0]), 0)
        width = max(1, round(pen_px / LABEL_DS))
        ImageDraw.Draw(pen).line([tuple(p) for p in pen_xy / LABEL_DS], fill=1, width=width)
        out[(np.asarray(pen) > 0) & (out == 0)] = 3
    return out


def _textures(rng: np.random.Generator) -> np.ndarray:
    """Periodic textures, index = label: 0 glass, 1 tumor (nuclei), 2 stroma (fibres), 3 pen."""
    from scipy import ndimage

    shape = (TEX_PX, TEX_PX)

    def field(sigma: tuple[float, float]) -> np.ndarray:
        f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
        return (f - f.mean()) / (f.std() + 1e-9)

    def mix(weight: np.ndarray, light: tuple, dark: tuple) -> np.ndarray:
        w = np.clip(weight, 0, 1)[..., None]
        return (1 - w) * np.array(light, float) + w * np.array(dark, float)

    nuclei = field((2.8, 2.8)) > 1.0  # dense, round dark nuclei
    tumor = mix(0.35 + 0.15 * field((6, 6)), (215, 165, 215), (150, 90, 170))
    tumor[nuclei] = mix(0.8 + 0.2 * field((1, 1))[nuclei], (120, 60, 150), (60, 25, 100))
    fibres = field((0.8, 9.0))  # streaks along x
    stroma = mix(0.45 + 0.25 * fibres, (245, 185, 205), (205, 95, 150))
    spindle = field((1.2, 4.0)) > 2.3  # sparse elongated nuclei
    stroma[spindle] = (110, 55, 140)
    glass = 240.0 + 3.0 * field((3, 3))[..., None] * np.ones(3)
    ink = np.array([(40, 150, 80), (40, 70, 175)][int(rng.integers(0, 2))], float)
    pen = ink + 10.0 * field((2, 2))[..., None]
    noise = 5.0 * rng.standard_normal((*shape, 3))
    rgb = np.clip(np.stack([glass, tumor, stroma, pen]) + noise, 0, 255).astype(np.uint8)
    return rgb.view("V3")[..., 0]  # (4, TEX_PX, TEX_PX) 3-byte pixels: one gather each


def _render_band(label: np.ndarray, tex: np.ndarray, y0: int, rows: int, width: int) -> np.ndarray:
    """Level-0 rows ``y0 .. y0+rows`` (full width) as RGB uint8; ``y0`` a multiple of LABEL_DS.

    ``tex`` holds the class textures as 3-byte pixels, shape ``(classes, TEX_PX, TEX_PX)``:
    every output pixel is one gather from it.
    """
    lab = label[y0 // LABEL_DS : -(-(y0 + rows) // LABEL_DS)].astype(np.int32) * TEX_PX**2
    lab = np.repeat(np.repeat(lab, LABEL_DS, axis=0)[:rows], LABEL_DS, axis=1)[:, :width]
    lab += (np.arange(y0, y0 + rows, dtype=np.int32) % TEX_PX * TEX_PX)[:, None]
    lab += np.arange(width, dtype=np.int32) % TEX_PX
    return np.take(tex.ravel(), lab).view(np.uint8).reshape(rows, width, 3)


def _shrink(img: np.ndarray, factor: int) -> np.ndarray:
    """Box-average downsample by an integer factor (edges cropped; PIL, C speed)."""
    h, w = img.shape[0] // factor, img.shape[1] // factor
    crop = np.ascontiguousarray(img[: h * factor, : w * factor])
    return np.asarray(Image.fromarray(crop).reduce(factor))


def _geojson(regions: list[tuple[int, np.ndarray]], rng: np.random.Generator) -> dict:
    features = []
    for label, xy in regions:
        ring = [[float(x), float(y)] for x, y in xy] + [[float(xy[0, 0]), float(xy[0, 1])]]
        name, color = CLASSES[label]
        props = {"objectType": "annotation", "classification": {"name": name, "color": color}}
        geom = {"type": "Polygon", "coordinates": [ring]}
        fid = f"{int(rng.integers(0, 2**63)):032x}"
        features.append({"type": "Feature", "id": fid, "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def make_synthetic_slide(
    path: str | Path,
    *,
    seed: int = 0,
    width_px: int = 4096,
    height_px: int = 3072,
    mpp: float = 0.5,
    tile_px: int = 256,
    subsampling: str = "420",
    jpeg_quality: int = 90,
    with_mpp: bool = True,
    pen: bool = False,
    level_factor: int = 2,
    mask_downsample: int = 16,
    min_level_px: int = 1024,
) -> SynthSlide:
    """Write a synthetic pyramidal tiled JPEG TIFF plus its label mask and GeoJSON.

    Args:
        path: Output ``.tif`` path; the mask (``<stem>_mask.png``) and ``<stem>.geojson`` go beside.
        seed: Seed; the same arguments give byte-identical files.
        width_px: Level-0 width.
        height_px: Level-0 height.
        mpp: Microns per pixel at level 0 (written as resolution tags in centimetres).
        tile_px: TIFF tile side (multiple of 16).
        subsampling: JPEG chroma subsampling, ``"420"`` or ``"444"``.
        jpeg_quality: JPEG quality 1-100.
        with_mpp: False writes no resolution at all (a slide without MPP).
        pen: Draw a green or blue pen stroke on the glass (not tissue in the ground truth).
        level_factor: Downsample between pyramid levels (2 or 4).
        mask_downsample: Level-0 pixels per label-mask pixel.
        min_level_px: Levels are added until the longest side is below this.

    Returns:
        The written :class:`SynthSlide`.
    """
    import tifffile

    if subsampling not in SUBSAMPLING or tile_px % 16 or level_factor not in (2, 4):
        raise ValueError("subsampling must be 420|444, tile_px a multiple of 16, level_factor 2|4")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pen_xy, pen_w = None, 0.0
    if pen:  # a long wavy ink line across the glass; tissue regions keep clear of it
        t = np.linspace(0, 1, 40)
        yc = rng.uniform(0.25, 0.75) * height_px
        wave = 0.05 * height_px * np.sin(2 * np.pi * (t * rng.uniform(0.5, 1.5) + rng.uniform()))
        pen_xy = np.stack([width_px * (0.05 + 0.9 * t), yc + wave], axis=1)
        pen_w = max(8.0, 0.015 * min(width_px, height_px))
    regions = _blob_polygons(rng, width_px, height_px, pen_xy)
    tex = _textures(rng)
    label_shape = (-(-height_px // LABEL_DS), -(-width_px // LABEL_DS))
    label = _render_label(regions, label_shape, pen_xy, pen_w)
    mask_shape = (-(-height_px // mask_downsample), -(-width_px // mask_downsample))
    truth = rasterize(regions, mask_shape, mask_downsample)

    kw: dict = {"tile": (tile_px, tile_px), "photometric": "rgb", "compression": "jpeg"}
    kw.update(compressionargs={"level": jpeg_quality}, subsampling=SUBSAMPLING[subsampling])
    kw.update(dtype=np.uint8, metadata=None)
    if with_mpp:
        kw.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    img = np.empty((height_px // level_factor, width_px // level_factor, 3), np.uint8)  # level 1

    def level0_tiles() -> Iterator[np.ndarray]:
        for y0 in range(0, height_px, tile_px):
            band = _render_band(label, tex, y0, min(tile_px, height_px - y0), width_px)
            small = _shrink(band, level_factor)
            img[y0 // level_factor : y0 // level_factor + len(small)] = small
            yield from (band[:, x : x + tile_px] for x in range(0, width_px, tile_px))

    with (
        atomic_file(path) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=width_px * height_px > 2**31) as tif,
    ):
        desc = f"AutoSCOPE synthetic slide seed={seed}"
        tif.write(level0_tiles(), shape=(height_px, width_px, 3), description=desc, **kw)
        size = max(width_px, height_px)
        while size >= min_level_px:
            size = max(img.shape[:2])
            tif.write(img, subfiletype=1, **kw)
            img = _shrink(img, level_factor)

    mask_path = path.with_name(path.stem + "_mask.png")
    geojson_path = path.with_suffix(".geojson")
    with atomic_file(mask_path) as tmp:
        Image.fromarray(truth).save(tmp, "PNG")
    write_text(geojson_path, json.dumps(_geojson(regions, rng)))
    return SynthSlide(
        path, mask_path, geojson_path, truth, mask_downsample, width_px, height_px, mpp, pen
    )


def main(argv: list[str] | None = None) -> None:
    """CLI: write ``--count`` slides ``slide_000.tif ...`` (seeds ``seed, seed+1, ...``)."""
    p = argparse.ArgumentParser(prog="python -m autoscope.slides.synth", description=__doc__)
    p.add_argument("out_dir", type=Path, help="folder for slide_NNN.tif, masks and GeoJSON")
    p.add_argument("--count", type=int, default=3, help="number of slides")
    p.add_argument("--seed", type=int, default=0, help="seed of the first slide")
    p.add_argument("--width-px", type=int, default=4096, help="level-0 width")
    p.add_argument("--height-px", type=int, default=3072, help="level-0 height")
    p.add_argument("--mpp", type=float, default=0.5, help="microns per pixel at level 0")
    p.add_argument("--tile-px", type=int, default=256, help="TIFF tile side")
    p.add_argument("--subsampling", choices=sorted(SUBSAMPLING), default="420")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--level-factor", type=int, choices=(2, 4), default=2)
    p.add_argument("--no-mpp", action="store_true", help="write no MPP (resolution) at all")
    p.add_argument("--pen", action="store_true", help="draw a pen stroke on the glass")
    a = p.parse_args(argv)
    keys = ("width_px", "height_px", "mpp", "tile_px", "subsampling", "jpeg_quality", "pen")
    kw = {k: getattr(a, k) for k in (*keys, "level_factor")} | {"with_mpp": not a.no_mpp}
    for i in range(a.count):
        print(make_synthetic_slide(a.out_dir / f"slide_{i:03d}.tif", seed=a.seed + i, **kw).path)


if __name__ == "__main__":
    main()
