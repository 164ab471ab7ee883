"""Segmentation datasets: patch + mask pairs from region polygons or label-mask images.

`SegTargets` is the segmentation family's `Targets` (`autoscope.datasets.targets`):

- `{type: geojson | xml, ...}` (QuPath GeoJSON, ASAP / ImageScope XML; files matched to slides as
  in `plan`): grid patches whose area the annotated regions cover for `min_overlap`; each
  pixel takes its polygon's class; pixels no polygon covers take `IGNORE` (255), or the class
  `dataset.class_map.unannotated` names (e.g. `{unannotated: background}` when every tissue
  region is drawn, so the glass around it is background);
- `{type: masks, path: DIR}`: pre-cut images with a label mask beside each
  (`<stem>_mask.png|tif|tiff`, values = class index, 255 = ignore), cut as images are.

A patch's `label` (what the splits stratify on) is its most frequent annotated class.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.datasets import plan as planning
from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.seg_masks import (
    IGNORE,
    crop_resize_mask,
    mask_file,
    mask_pairs,
    rasterize_patch,
    read_label_mask,
)
from autoscope.errors import UserError

UNANNOTATED = "unannotated"  # class_map key: the class of pixels no polygon covers
REGION_TYPES = ("geojson", "xml")
MASK_TYPES = ("masks",)


def fill_value(mapper: ClassMapper) -> int:
    """The mask value of unannotated pixels: `class_map.unannotated`'s class index, else 255."""
    try:
        idx = mapper.index(UNANNOTATED, "dataset.class_map")
    except UserError:
        return IGNORE
    return IGNORE if idx is None else int(idx)


def _xml_mpp(path: Path) -> float | None:
    """`MicronsPerPixel` of an ImageScope XML root (None when absent or not a number)."""
    import xml.etree.ElementTree as ET

    try:
        value = ET.parse(path).getroot().get("MicronsPerPixel")
        return float(value) if value not in (None, "") and float(value) > 0 else None
    except (ET.ParseError, OSError, ValueError):
        return None


def _slide_mpp(row: pd.Series, path: Path) -> float:
    """The level-0 MPP a patch footprint needs; a one-line error when neither side has one."""
    mpp = float(row["mpp_x"]) if pd.notna(row.get("mpp_x")) else 0.0
    if mpp > 0:
        return mpp
    if path.suffix.lower() == ".xml":
        xml = _xml_mpp(path)
        if xml is None:
            raise UserError(
                f"{path}: the XML has no MicronsPerPixel and slide '{row['name']}' has no MPP "
                "either (give it in slides.metadata, column mpp)"
            )
        raise UserError(
            f"{path}: slide '{row['name']}' has no MPP (the XML says MicronsPerPixel={xml}: "
            "give it in slides.metadata, column mpp, and ingest again)"
        )
    raise UserError(f"{path}: slide '{row['name']}' has no MPP (give it in slides.metadata)")


class SegTargets:
    """Plans segmentation patches and writes their masks beside the shards (one per build)."""

    def __init__(self) -> None:
        self.regions: dict[
            tuple[str, str], dict[int, Any]
        ] = {}  # (slide_id, file) -> class polygons
        self.masks: dict[str, Path] = {}  # image path -> its label mask
        self.fill = IGNORE

    def plan(
        self, ds: Any, project: Any, registry: pd.DataFrame, detector: Any
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Patch rows (`plan._rows` columns; label = the dominant class) and no points."""
        mapper = ClassMapper(project.class_names, ds.class_map)
        self.fill = fill_value(mapper)
        rng = np.random.default_rng(int(ds.split.seed))
        frames = []
        for i, src in enumerate(ds.sources):
            where = f"dataset.sources[{i}]"
            if src.type in REGION_TYPES:
                frames += self._plan_regions(src, ds, registry, mapper, rng, where)
            elif src.type in MASK_TYPES:
                frames.append(self._plan_masks(src, len(mapper.names), where))
            else:
                kinds = ", ".join((*REGION_TYPES, *MASK_TYPES))
                raise UserError(
                    f"{where}.type '{src.type}': a segmentation dataset takes {kinds} sources"
                )
        frames = [f for f in frames if len(f)]
        if not frames:
            raise UserError(
                f"dataset '{ds.name}': the sources give no patches (check min_overlap, classes)"
            )
        return pd.concat(frames, ignore_index=True), pd.DataFrame()

    def _plan_regions(
        self,
        src: Any,
        ds: Any,
        registry: pd.DataFrame,
        mapper: ClassMapper,
        rng: np.random.Generator,
        where: str,
    ) -> list[pd.DataFrame]:
        import shapely

        from autoscope.datasets.annotations import read_annotations
        from autoscope.slides import samplers
        from autoscope.slides.units import level0_px

        frames = []
        for ref, path in planning.annotation_files(src, where):
            row = planning.find_slide(registry, ref or path.stem, f"{path}")
            slide_mpp = _slide_mpp(row, path)
            ann = read_annotations(path)
            w, h = int(row["width_px"]), int(row["height_px"])
            ann.check_inside(w, h)
            by_class: dict[int, list] = {}
            for r in ann.regions:
                idx = mapper.index(r.label, f"{path}: {r.feature}")
                if idx is not None:
                    by_class.setdefault(idx, []).append(r.geometry)
            if not by_class:
                continue
            union = {k: shapely.union_all(v) for k, v in sorted(by_class.items())}
            self.regions[(str(row["slide_id"]), str(path))] = union
            fp = level0_px(slide_mpp, float(ds.mpp), ds.patch_px)
            stride = level0_px(slide_mpp, float(ds.mpp), ds.stride(src))
            overlap = float(ds.setting(src, "min_overlap"))
            annotated = shapely.union_all(list(union.values()))
            xy, _ = samplers.in_regions({0: annotated}, fp, stride, overlap, w, h)
            xy = xy[samplers.cap(len(xy), ds.setting(src, "max_patches_per_slide"), rng)]
            if not len(xy):
                continue
            frac = np.stack([samplers.region_fractions(xy, g, fp) for g in union.values()], 1)
            labels = np.array(list(union), np.int64)[frac.argmax(1)]
            level = ds.setting(src, "label_level")
            frames.append(planning._rows(row, xy, labels, level, str(path)))
        return frames

    def _plan_masks(self, src: Any, num_classes: int, where: str) -> pd.DataFrame:
        from autoscope.datasets.imports import _group

        rows = []
        for img, mask in mask_pairs(Path(str(src.path or "")), where):
            arr = read_label_mask(mask, img, num_classes)
            counts = np.bincount(arr[arr != IGNORE].ravel(), minlength=num_classes)
            if counts.sum() == 0:
                continue  # nothing annotated: nothing to learn
            self.masks[str(img)] = mask
            digest = hashlib.sha1(img.read_bytes() + mask.read_bytes()).hexdigest()[:16]
            rows.append(
                {
                    "patch_id": digest,
                    "slide_id": "",
                    "slide": img.stem,
                    "x": 0,
                    "y": 0,
                    "label_idx": int(counts.argmax()),
                    "label_level": src.label_level or "tissue",
                    "source": str(img),
                    "group": _group(img, src.group_regex),
                    "split": None,
                    "point_x": np.nan,
                    "point_y": np.nan,
                }
            )
        frame = pd.DataFrame(rows)
        if len(frame):
            frame["mpp"] = float(src.mpp) if src.mpp is not None else np.nan
            frame["pyramid_level"] = -1
        return frame

    def write(
        self,
        plan: pd.DataFrame,
        tmp: Path,
        ds: Any,
        project: Any,
        slides: dict[str, tuple[str, float]],
    ) -> dict[str, Any]:
        """`masks/shard_NNNNN.npy` aligned with the pixel shards; class pixel statistics."""
        patch_px = int(ds.patch_px)
        (tmp / "masks").mkdir(parents=True, exist_ok=True)
        arrays = {}
        for shard, rows in plan.groupby("shard", sort=True):
            arrays[shard] = np.lib.format.open_memmap(
                tmp / mask_file(str(shard)),
                mode="w+",
                dtype=np.uint8,
                shape=(int(rows["index"].max()) + 1, patch_px, patch_px),
            )
        for r in plan.itertuples(index=False):
            if str(r.slide_id):
                union = self.regions[(str(r.slide_id), str(r.source))]
                scale = float(ds.mpp) / float(slides[str(r.slide_id)][1])
                m = rasterize_patch(union, r.x, r.y, scale, patch_px, self.fill)
            else:
                arr = read_label_mask(self.masks[str(r.source)], Path(str(r.source)), 256)
                m = crop_resize_mask(arr, patch_px)
            arrays[r.shard][int(r.index)] = m
        names = list(project.class_names)
        by_split: dict[str, dict[str, int]] = {}
        ignored = 0
        for split, rows in plan.groupby("split", sort=True):
            counts = np.zeros(256, np.int64)
            for shard, part in rows.groupby("shard"):
                counts += np.bincount(
                    arrays[shard][part["index"].to_numpy()].ravel(), minlength=256
                )
            by_split[str(split)] = {n: int(counts[k]) for k, n in enumerate(names)}
            ignored += int(counts[IGNORE])
        for a in arrays.values():
            a.flush()
        del arrays
        total = {n: sum(s[n] for s in by_split.values()) for n in names}
        return {
            "kind": "segmentation",
            "classes": names,
            "colors": [c.color for c in project.classes],
            "ignore_index": IGNORE,
            "unannotated": "ignore" if self.fill == IGNORE else names[self.fill],
            "pixels": total,
            "pixels_by_split": by_split,
            "ignored_pixels": ignored,
        }

    def pictures(self, tmp: Path, plan: pd.DataFrame, project: Any, ds: Any) -> dict[str, str]:
        """`report/montage_masks.png` (patches with their masks overlaid) and
        `report/class_pixels.png` (annotated pixels per class and split)."""
        from autoscope.datasets.seg_pictures import mask_montage, pixel_chart

        out = tmp / "report"
        out.mkdir(parents=True, exist_ok=True)
        colors = [c.color for c in project.classes]
        mask_montage(tmp, plan, colors, int(ds.split.seed), out / "montage_masks.png")
        pixel_chart(tmp, list(project.class_names), out / "class_pixels.png")
        return {"masks": "montage_masks.png", "pixels": "class_pixels.png"}
