"""Segmentation masks of patches: polygons rasterised at the patch grid, label-mask images read
beside pre-cut images, and the `masks/` files of a built dataset.

A mask is uint8 `[patch_px, patch_px]`: the project class index per pixel, `IGNORE` (255) where
no annotation says what the pixel is. `masks/shard_NNNNN.npy` mirrors `shards/shard_NNNNN.npy`
row for row (same shard names and indices as the manifest), so a split's masks load like its
pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.errors import UserError

IGNORE = 255  # mask value of pixels no annotation covers (no loss, no metric)
MASK_SUFFIXES = (".png", ".tif", ".tiff")  # label masks beside pre-cut images: <stem>_mask.<ext>


def mask_file(shard: str) -> str:
    """`masks/shard_NNNNN.npy` of the pixel shard `shards/shard_NNNNN.npy`."""
    return "masks/" + Path(shard).name


def rasterize_patch(
    regions: Mapping[int, Any], x0: float, y0: float, scale: float, patch_px: int, fill: int
) -> np.ndarray:
    """The mask of one patch from class polygons in level-0 px.

    Args:
        regions: class index -> shapely (multi)polygon in level-0 pixels.
        x0, y0: the patch's top-left corner in level-0 pixels.
        scale: level-0 pixels per patch pixel (`mpp / slide_mpp`).
        patch_px: patch side.
        fill: value of pixels no region covers (`IGNORE`, or the class of unannotated pixels).

    A pixel takes a class when its centre lies inside that class's polygon (holes kept); where
    classes overlap, the later (higher index) wins.
    """
    import shapely
    from skimage.draw import polygon

    out = np.full((patch_px, patch_px), fill, np.uint8)
    side = patch_px * scale
    box = (x0 - scale, y0 - scale, x0 + side + scale, y0 + side + scale)
    for k, geom in sorted(regions.items()):
        part = shapely.clip_by_rect(geom, *box)
        if part.is_empty:
            continue
        layer = np.zeros((patch_px, patch_px), bool)
        for poly in getattr(part, "geoms", [part]):
            if poly.geom_type != "Polygon" or poly.is_empty:
                continue
            rings = [(poly.exterior, True)] + [(r, False) for r in poly.interiors]
            for ring, value in rings:
                xy = (np.asarray(ring.coords) - (x0, y0)) / scale - 0.5  # pixel centres
                rr, cc = polygon(xy[:, 1], xy[:, 0], layer.shape)
                layer[rr, cc] = value
        out[layer] = k
    return out


def _mask_of(image: Path) -> Path | None:
    for suffix in MASK_SUFFIXES:
        p = image.with_name(f"{image.stem}_mask{suffix}")
        if p.is_file():
            return p
    return None


def mask_pairs(folder: Path, where: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a folder: every image with a `<stem>_mask.png|tif|tiff` beside it.

    Raises:
        UserError: not a folder, no images, or an image without its mask.
    """
    from autoscope.datasets.imports import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise UserError(f"{where}.path '{folder}' is not a folder (images with <stem>_mask.png)")
    images = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask")
    )
    if not images:
        raise UserError(f"{where}.path '{folder}' holds no images")
    pairs = []
    for img in images:
        m = _mask_of(img)
        if m is None:
            raise UserError(f"{img}: no label mask beside it (want {img.stem}_mask.png)")
        pairs.append((img, m))
    return pairs


def read_label_mask(mask: Path, image: Path, num_classes: int) -> np.ndarray:
    """The label mask of a pre-cut image, checked against it (values: class index or 255).

    Raises:
        UserError: unreadable, not the image's size, or a value that is no class (file named).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as im:
            size = im.size
        with Image.open(mask) as mk:
            if mk.mode not in ("L", "P", "I", "I;16", "1"):
                raise UserError(f"{mask}: a label mask must be single-channel (got mode {mk.mode})")
            arr = np.asarray(mk)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{mask}: label mask does not decode ({e})") from None
    if (arr.shape[1], arr.shape[0]) != size:
        raise UserError(
            f"{mask}: label mask is {arr.shape[1]}x{arr.shape[0]} px but its image {image.name} "
            f"is {size[0]}x{size[1]} px"
        )
    values = np.unique(arr)
    bad = values[(values >= num_classes) & (values != IGNORE)]
    if len(bad):
        raise UserError(
            f"{mask}: label value {int(bad[0])} is no class (use 0..{num_classes - 1} for the "
            f"project classes, {IGNORE} for unannotated pixels)"
        )
    return arr.astype(np.uint8)


def crop_resize_mask(arr: np.ndarray, patch_px: int) -> np.ndarray:
    """The mask cut as `imports.load_image` cuts its image: centre square, then resized
    (nearest neighbour: labels are never blended)."""
    from PIL import Image

    h, w = arr.shape
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    img = Image.fromarray(arr).resize((patch_px, patch_px), Image.Resampling.NEAREST, box=box)
    return np.asarray(img, np.uint8)


def load_masks(ds_dir: str | Path, split: str) -> np.ndarray:
    """The masks uint8 `[N,H,W]` of one split, in manifest order (as `store.load_split`)."""
    from autoscope.datasets.store import read_manifest

    ds_dir = Path(ds_dir)
    m = read_manifest(ds_dir, ["shard", "index", "split"])
    m = m[m["split"] == split]
    files = {s: np.load(ds_dir / mask_file(s), mmap_mode="r") for s in m["shard"].unique()}
    if m.empty:
        first = next((ds_dir / "masks").glob("*.npy"), None)
        side = np.load(first, mmap_mode="r").shape[1] if first else 0
        return np.zeros((0, side, side), np.uint8)
    out = [files[s][i] for s, i in zip(m["shard"], m["index"], strict=True)]
    return np.stack(out).astype(np.uint8)
