"""Typed dataset specs: what `dataset build` cuts, as frozen dataclasses of plain values.

The `dataset` stage builds them from `conf/dataset/*.yaml` (where every default lives, see
`conf/dataset/_base.yaml`); library code takes them and never the composed config. A
`SourceSpec` field left `None` falls back to the dataset-wide value of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from autoscope.errors import UserError

SPLIT_UNITS = ("slide", "patient", "group")  # split units that never straddle two splits


@dataclass(frozen=True)
class SourceSpec:
    """One entry of `dataset.sources` (see `autoscope.datasets.plan` for the kinds).

    Attributes:
        type: geojson | xml | points | slide_labels | folder | csv.
        path: An annotation file or folder, a slide-label CSV, an image folder or CSV.
        glob: A glob of annotation files (matched to slides by file stem).
        files: Slide reference -> annotation file.
        slide: The slide of a single annotation `path` (default: the file stem).
        column: Registry column holding slide labels (`slide_labels`).
        mpp: Resolution of pre-cut images (`folder`, `csv`).
        group_regex: Regex whose first group names the split group of a pre-cut image.
        stride_px: Per-source grid step at the dataset's mpp.
        min_overlap: Per-source minimal covered share of a patch.
        max_patches_per_slide: Per-source seeded cap per slide.
        label_level: Per-source label level (cell, tissue, organ).
    """

    type: str
    path: str | None = None
    glob: str | None = None
    files: Mapping[str, str] | None = None
    slide: str | None = None
    column: str | None = None
    mpp: float | None = None
    group_regex: str | None = None
    stride_px: int | None = None
    min_overlap: float | None = None
    max_patches_per_slide: int | None = None
    label_level: str | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The keys a source entry may have."""
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class SplitSpec:
    """How patches are divided into train/val/test without leakage.

    Attributes:
        by: slide | patient | group: the unit that never straddles two splits.
        column: Registry column of the patient/group (None: the `by` name).
        fractions: Split name -> share of groups or patches (summing to 1).
        seed: Seed of the split assignment, the caps and the report's montages.
        sized_by: `groups` (the fractions count groups) or `patches`.
    """

    by: str
    column: str | None
    fractions: Mapping[str, float]
    seed: int
    sized_by: str = "groups"


@dataclass(frozen=True)
class DatasetSpec:
    """A patch dataset to build (`conf/dataset/<name>.yaml`).

    Attributes:
        name: Folder under `data/<project>/datasets/`; None when no dataset is selected.
        sources: Where labels come from.
        class_map: Annotation class name -> project class (None drops the class).
        patch_px: Patch side in pixels at `mpp`.
        mpp: Patch resolution (um/px).
        stride_px: Grid step at `mpp` (None: `patch_px`, no overlap).
        min_overlap: Share of a patch its class's regions (or the tissue) must cover.
        max_patches_per_slide: Seeded random cap per slide and source (None keeps all).
        label_level: Label level of region sources.
        split: The train/val/test split.
        shard_mb: Target size of one pixel shard.
        workers: Reader processes per slide.
        dvc_add: `dvc add` the built folder in the workspace's DVC repo.
    """

    name: str | None
    sources: tuple[SourceSpec, ...]
    class_map: Mapping[str, str | None]
    patch_px: int
    mpp: float | None
    stride_px: int | None
    min_overlap: float
    max_patches_per_slide: int | None
    label_level: str
    split: SplitSpec
    shard_mb: float
    workers: int
    dvc_add: bool

    def setting(self, src: SourceSpec, key: str) -> Any:
        """A per-source setting (`stride_px`, `min_overlap`, ...), else the dataset-wide one."""
        value = getattr(src, key)
        return getattr(self, key) if value is None else value

    def stride(self, src: SourceSpec) -> int:
        """The grid step of a source at `mpp` (default: `patch_px`)."""
        value = self.setting(src, "stride_px")
        return int(self.patch_px if value is None else value)


def source_spec(entry: Mapping[str, Any], where: str) -> SourceSpec:
    """A `SourceSpec` from one plain `dataset.sources` mapping, checking its keys.

    Raises:
        UserError: the entry has keys a source does not read (the message names `where`).
    """
    unknown = sorted(set(entry) - set(SourceSpec.keys()))
    if unknown:
        raise UserError(
            f"{where}: unknown key '{unknown[0]}' (a source takes {', '.join(SourceSpec.keys())})"
        )
    values = dict(entry)
    if values.get("files") is not None:
        values["files"] = {str(k): str(v) for k, v in dict(values["files"]).items()}
    for key in ("path", "glob", "slide", "column", "group_regex", "label_level"):
        if values.get(key) is not None:
            values[key] = str(values[key])
    values["type"] = str(values.get("type"))
    return SourceSpec(**values)
