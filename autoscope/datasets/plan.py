"""Dataset sources -> a plan: one row per patch to cut, before any pixel is read.

`dataset.sources` is a list, any mix of:

- `{type: geojson | xml | points, path: FILE-or-DIR | glob: PATTERN | files: {slide: FILE},
  slide: REF}`: regions give patches inside them (`min_overlap`, `stride_px`), points (GeoJSON
  Point/MultiPoint or CSV `x,y,class`) give cell-level patches centred on them;
- `{type: slide_labels, column: REGISTRY_COLUMN}` or `{..., path: CSV slide,label}`: organ-level
  patches from the tissue area of each labelled slide;
- `{type: folder, path: DIR}` (one sub-folder per class) or `{type: csv, path: CSV
  path,label[,group][,split]}`: pre-cut images (see `imports`; optional `mpp`, `group_regex`).

Any source may override `stride_px`, `min_overlap`, `max_patches_per_slide` and `label_level`.
Patches are placed by the project's one sampler (`autoscope.slides.samplers`), with lengths in
level-0 pixels from `autoscope.slides.units.level0_px`, as inference places them.
Annotation files are matched to registered slides by file stem (= slide name), by an explicit
`slide:` or by a `files:` mapping. Everything is validated here (classes, geometry, slides), so
a bad input fails before anything is written.
"""

from __future__ import annotations

import glob as globlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.datasets.annotations import read_annotations
from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.spec import DatasetSpec, SourceSpec
from autoscope.errors import UserError
from autoscope.slides import samplers
from autoscope.slides.units import level0_px

ANNOTATION_TYPES = {
    "geojson": (".geojson", ".json"),
    "xml": (".xml",),
    "points": (".geojson", ".json", ".csv"),
}
IMAGE_TYPES = {"folder", "csv"}
SLIDE_TYPES = {"slide_labels"}


def annotation_files(src: SourceSpec, where: str) -> list[tuple[str | None, Path]]:
    """(slide ref or None for "by stem", file) pairs of an annotation source."""
    suffixes = ANNOTATION_TYPES[src.type]
    if src.files:
        return [(str(k), Path(str(v))) for k, v in dict(src.files).items()]
    if src.glob:
        hits = sorted(Path(p) for p in globlib.glob(src.glob, recursive=True))
        if not hits:
            raise UserError(f"{where}.glob '{src.glob}' matches no files")
        return [(None, p) for p in hits]
    if src.path:
        p = Path(src.path)
        if p.is_dir():
            hits = sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes)
            if not hits:
                raise UserError(f"{where}.path '{p}' holds no {'/'.join(suffixes)} files")
            return [(None, q) for q in hits]
        return [(src.slide, p)]
    raise UserError(f"{where} needs one of path, glob or files")


def find_slide(registry: pd.DataFrame, ref: str, where: str) -> pd.Series:
    """The registry row of a slide name or slide_id (prefix); it must be usable (status ok)."""
    hits = registry[(registry["name"] == ref) | (registry["slide_id"] == ref)]
    if hits.empty and "." in ref:  # QuPath-style `slide_000.svs.geojson` -> stem `slide_000.svs`
        hits = registry[registry["name"] == Path(ref).stem]
    if hits.empty:
        hits = (
            registry[registry["slide_id"].astype(str).str.startswith(ref)]
            if len(ref) >= 6
            else hits
        )
    if hits.empty:
        raise UserError(
            f"{where}: slide '{ref}' is not in the registry (run `autoscope slides ingest`)"
        )
    if len(hits) > 1:
        raise UserError(
            f"{where}: slide '{ref}' is ambiguous ({len(hits)} registered slides match)"
        )
    row = hits.iloc[0]
    if row["status"] != "ok":
        raise UserError(
            f"{where}: slide '{ref}' is not usable (status {row['status']}: {row['error']})"
        )
    return row


def _geometry(row: pd.Series) -> tuple[int, int, float]:
    return int(row["width_px"]), int(row["height_px"]), float(row["mpp_x"])


def _lengths(ds: DatasetSpec, src: SourceSpec, slide_mpp: float) -> tuple[int, int]:
    """(patch footprint, grid step) of a source on a slide, in whole level-0 pixels."""
    mpp = float(ds.mpp or 0)
    return level0_px(slide_mpp, mpp, ds.patch_px), level0_px(slide_mpp, mpp, ds.stride(src))


def _rows(
    row: pd.Series, xy: np.ndarray, labels: np.ndarray, level: str, source: str
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "slide_id": row["slide_id"],
            "slide": row["name"],
            "x": xy[:, 0],
            "y": xy[:, 1],
            "label_idx": labels.astype(np.int64),
            "label_level": level,
            "source": source,
            "point_x": np.nan,
            "point_y": np.nan,
        }
    )


def plan_annotations(
    src: SourceSpec,
    ds: DatasetSpec,
    registry: pd.DataFrame,
    mapper: ClassMapper,
    rng: np.random.Generator,
    where: str,
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Plan rows (and kept points) of a geojson / xml / points source."""
    import shapely

    frames, points = [], []
    max_n = ds.setting(src, "max_patches_per_slide")
    level = ds.setting(src, "label_level")
    for ref, path in annotation_files(src, where):
        row = find_slide(registry, ref or path.stem, f"{path}")
        ann = read_annotations(path)
        w, h, slide_mpp = _geometry(row)
        ann.check_inside(w, h)
        fp, stride = _lengths(ds, src, slide_mpp)
        by_class: dict[int, list] = {}
        for r in ann.regions:
            idx = mapper.index(r.label, f"{path}: {r.feature}")
            if idx is not None:
                by_class.setdefault(idx, []).append(r.geometry)
        if by_class:
            union = {k: shapely.union_all(v) for k, v in sorted(by_class.items())}
            overlap = float(ds.setting(src, "min_overlap"))
            xy, lab = samplers.in_regions(union, fp, stride, overlap, w, h)
            keep = samplers.cap(len(xy), max_n, rng)
            frames.append(_rows(row, xy[keep], lab[keep], level, str(path)))
        kept = [(p, mapper.index(p.label, f"{path}: {p.feature}")) for p in ann.points]
        kept = [(p, i) for p, i in kept if i is not None]
        if kept:
            pts = np.array([[p.x, p.y] for p, _ in kept])
            lab = np.array([i for _, i in kept], np.int64)
            points.append(
                pd.DataFrame(
                    {
                        "slide_id": row["slide_id"],
                        "slide": row["name"],
                        "x": pts[:, 0],
                        "y": pts[:, 1],
                        "label_idx": lab,
                        "source": str(path),
                    }
                )
            )
            keep = samplers.cap(len(pts), max_n, rng)
            corners = samplers.around_points(pts[keep], fp, w, h)
            f = _rows(row, corners, lab[keep], "cell", str(path))
            f["point_x"], f["point_y"] = pts[keep, 0], pts[keep, 1]
            frames.append(f)
    return frames, points


def _tissue_mask(row: pd.Series, detector: Any) -> tuple[np.ndarray, float]:
    """The slide's low-resolution tissue mask and its downsample (level-0 px per mask px).

    The mask the registry stored at ingest time; a slide without one is detected again with
    `detector` (an object with `mask(rgb) -> bool mask`, e.g. `TissueDetector`).
    """
    mask_path = row.get("tissue_mask")
    if isinstance(mask_path, str) and mask_path and Path(mask_path).is_file():
        from PIL import Image

        mask = np.asarray(Image.open(mask_path).convert("L")) > 0
        return mask, float(row["width_px"]) / mask.shape[1]
    from autoscope.slides.reader import open_reader

    with open_reader(row["path"], mpp_x=float(row["mpp_x"])) as reader:
        thumb = reader.thumbnail(1024)
    return np.asarray(detector.mask(thumb), bool), float(row["width_px"]) / thumb.shape[1]


def _slide_label_pairs(
    src: SourceSpec, registry: pd.DataFrame, where: str
) -> tuple[list[tuple[str, Any]], str]:
    """(slide ref, label) pairs of a slide-label source, and where they come from."""
    if src.path:
        try:
            table = pd.read_csv(src.path)
        except (OSError, ValueError, UnicodeDecodeError) as e:  # ParserError is a ValueError
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{src.path}: not a readable slide-label CSV ({first})") from None
        if not {"slide", "label"} <= set(table.columns):
            raise UserError(f"{src.path}: a slide-label CSV needs columns slide,label")
        return list(zip(table["slide"].astype(str), table["label"], strict=True)), src.path
    col = src.column
    if not col or col not in registry.columns:
        raise UserError(f"{where}.column '{col}' is not a registry column (or give path: a CSV)")
    ok = registry[(registry["status"] == "ok") & registry[col].notna()]
    return list(zip(ok["name"].astype(str), ok[col], strict=True)), f"registry:{col}"


def plan_slide_labels(
    src: SourceSpec,
    ds: DatasetSpec,
    registry: pd.DataFrame,
    mapper: ClassMapper,
    rng: np.random.Generator,
    where: str,
    detector: Any,
) -> list[pd.DataFrame]:
    """Organ/slide-level patches from the tissue area of slides with a label.

    A grid patch is kept when its tissue share reaches `min_overlap`
    (`autoscope.slides.samplers.foreground_grid`, the rule inference uses).
    """
    pairs, origin = _slide_label_pairs(src, registry, where)
    frames = []
    for ref, label in pairs:
        row = find_slide(registry, ref, origin)
        idx = mapper.index(str(label), f"{origin}: slide '{ref}'")
        if idx is None:
            continue
        w, h, slide_mpp = _geometry(row)
        fp, stride = _lengths(ds, src, slide_mpp)
        mask, down = _tissue_mask(row, detector)
        overlap = float(ds.setting(src, "min_overlap"))
        xy = samplers.foreground_grid(mask, down, fp, stride, overlap, width=w, height=h)
        xy = xy[samplers.cap(len(xy), ds.setting(src, "max_patches_per_slide"), rng)]
        labels = np.full(len(xy), idx, np.int64)
        frames.append(_rows(row, xy, labels, src.label_level or "organ", origin))
    return frames
