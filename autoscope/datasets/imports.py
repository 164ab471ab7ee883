"""Pre-cut patch imports: a folder per class, or a CSV `path,label[,group][,split]`.

Images are centre-cropped to a square and resized to `patch_px`; their patch_id is a hash of
the file's bytes, so the same image keeps its id across versions.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.spec import SourceSpec
from autoscope.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SPLITS = ("train", "val", "test")


def _group(path: Path, regex: str | None) -> str:
    if regex:
        m = re.search(regex, path.name)
        if m:
            return m.group(1) if m.groups() else m.group(0)
    return path.stem


def _listing(src: SourceSpec, where: str) -> pd.DataFrame:
    """path, label, group, split of every image a folder or CSV source names."""
    root = Path(src.path or "")
    if src.type == "folder":
        if not root.is_dir():
            raise UserError(
                f"{where}.path '{root}' is not a folder (want one sub-folder per class)"
            )
        rows = [
            (p, d.name, _group(p, src.group_regex), None)
            for d in sorted(root.iterdir())
            if d.is_dir()
            for p in sorted(d.rglob("*"))
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not rows:
            raise UserError(f"{where}.path '{root}' holds no images in class sub-folders")
        return pd.DataFrame(rows, columns=["path", "label", "group", "split"])
    if not root.is_file():
        raise UserError(f"{where}.path '{root}' is not a CSV file")
    try:
        df = pd.read_csv(root, dtype=str)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{root}: unreadable CSV ({e})") from None
    if not {"path", "label"} <= set(df.columns):
        raise UserError(f"{root}: an image CSV needs columns path,label[,group][,split]")
    paths = [p if p.is_absolute() else root.parent / p for p in map(Path, df["path"])]
    groups = df["group"] if "group" in df else [_group(p, src.group_regex) for p in paths]
    splits = df["split"] if "split" in df else [None] * len(df)
    out = pd.DataFrame({"path": paths, "label": df["label"], "group": groups, "split": splits})
    for i, s in enumerate(out["split"]):
        if isinstance(s, str) and s and s not in SPLITS:
            raise UserError(f"{root}: row {i + 2} has split '{s}' (use train, val or test)")
    out["split"] = out["split"].where(out["split"].isin(SPLITS), None)
    return out


def plan_images(src: SourceSpec, mapper: ClassMapper, where: str) -> pd.DataFrame:
    """Plan rows for a folder or CSV source (patch_id = hash of the image bytes)."""
    listing = _listing(src, where)
    rows = []
    for p, label, group, split in listing.itertuples(index=False):
        if not p.is_file():
            raise UserError(f"{where}: image {p} not found")
        idx = mapper.index(str(label), f"{p}")
        if idx is None:
            continue
        digest = hashlib.sha1(p.read_bytes()).hexdigest()[:16]
        rows.append(
            {
                "patch_id": digest,
                "slide_id": "",
                "slide": p.stem,
                "x": 0,
                "y": 0,
                "label_idx": idx,
                "label_level": src.label_level or "tissue",
                "source": str(p),
                "group": str(group),
                "split": split,
                "point_x": np.nan,
                "point_y": np.nan,
            }
        )
    frame = pd.DataFrame(rows)
    frame["mpp"] = float(src.mpp) if src.mpp is not None else np.nan
    frame["pyramid_level"] = -1
    return frame


def load_image(path: str | Path, patch_px: int) -> np.ndarray:
    """Decode an image as RGB, centre-crop it square and resize it to patch_px (uint8 HxWx3)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            method = Image.Resampling.BOX if s > patch_px else Image.Resampling.BILINEAR
            return np.asarray(im.resize((patch_px, patch_px), method, box=box), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"{path}: image does not decode ({e})") from None


def duplicate_images(plan: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """The exact duplicate pre-cut images of a plan (same patch_id: same bytes), first kept.

    Args:
        plan: planned rows in source order; image rows have an empty `slide_id`.
        classes: the project's class names (by `label_idx`).

    Returns:
        `dropped`: image rows that repeat an earlier one's bytes (the build keeps the first);
        `label_conflicts` / `group_conflicts`: dropped copies whose label / given group differs
        from the kept copy's (a group equal to the file's own stem counts as none given);
        `example`, `label_example`, `group_example`: one `a.png = b.png` pair of each ("" when
        none).
    """
    out = dict.fromkeys(("dropped", "label_conflicts", "group_conflicts"), 0)
    out |= dict.fromkeys(("example", "label_example", "group_example"), "")
    images = plan[plan["slide_id"].astype(str) == ""]
    if images.empty:
        return out
    rows = pd.DataFrame(
        {
            "id": images["patch_id"].astype(str).to_numpy(),
            "label": [classes[int(i)] for i in images["label_idx"]],
            "group": images["group"].astype(str).where(images["group"] != images["slide"]),
            "file": [Path(str(s)).name for s in images["source"]],
        }
    )
    dup = rows[rows["id"].duplicated()]
    kept = rows.drop_duplicates("id").set_index("id").loc[dup["id"]].set_index(dup.index)
    labels = dup["label"] != kept["label"]
    groups = dup["group"].notna() & kept["group"].notna() & (dup["group"] != kept["group"])

    def pair(mask: pd.Series, col: str | None = None) -> str:
        if not mask.any():
            return ""
        i = mask.idxmax()
        a, b = kept.at[i, "file"], dup.at[i, "file"]
        return f"{a} = {b}" if col is None else f"{a} ({kept.at[i, col]}) = {b} ({dup.at[i, col]})"

    return {
        "dropped": len(dup),
        "label_conflicts": int(labels.sum()),
        "group_conflicts": int(groups.sum()),
        "example": pair(pd.Series(True, index=dup.index)),
        "label_example": pair(labels, "label"),
        "group_example": pair(groups, "group"),
    }
