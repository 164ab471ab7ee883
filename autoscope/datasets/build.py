"""`dataset build`: plan and split, then shards, manifest, stats and report, renamed into place.

Takes typed values only: the `DatasetSpec` (every default in `conf/dataset/_base.yaml`), the
`ProjectSpec` (classes), the `Stores` (workspace, data folder) and the tissue detector used for
slides whose registry row has no stored mask.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.atomic import atomic_dir, sweep_stale, write_json
from autoscope.datasets import plan as planning
from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.diff import LINEAGE
from autoscope.datasets.imports import duplicate_images, plan_images
from autoscope.datasets.report import (
    compute_stats,
    duplicate_note,
    write_pictures,
    write_report,
    write_stats,
)
from autoscope.datasets.shards import pyramid_level, write_shards
from autoscope.datasets.spec import SPLIT_UNITS, DatasetSpec
from autoscope.datasets.splits import SPLITS, assign_splits, split_counts
from autoscope.datasets.store import MANIFEST, dataset_dir, dataset_version
from autoscope.datasets.targets import Targets
from autoscope.errors import UserError
from autoscope.locks import in_stores, store_lock
from autoscope.portable import portable_path
from autoscope.project import ProjectSpec, Stores
from autoscope.slides.registry import load_registry

# the loop's corrections of a finished plan: (plan, registry) -> (corrected plan, lineage or None)
Amend = Callable[[pd.DataFrame, pd.DataFrame], tuple[pd.DataFrame, dict[str, Any] | None]]

COLUMNS = [
    "patch_id",
    "slide_id",
    "slide",
    "x",
    "y",
    "pyramid_level",
    "mpp",
    "patch_px",
    "label",
    "label_idx",
    "label_level",
    "split",
    "group",
    "shard",
    "index",
    "source",
    "point_x",
    "point_y",
]


def check_spec(ds: DatasetSpec) -> None:
    """Fail with one line when the spec cannot give a dataset (before anything is read)."""
    if not ds.name:
        raise UserError("no dataset selected: pass dataset=<name> (conf/dataset/<name>.yaml)")
    if not ds.sources:
        raise UserError(f"dataset '{ds.name}': dataset.sources is empty")
    if int(ds.patch_px or 0) <= 0 or float(ds.mpp or 0) <= 0:
        raise UserError(f"dataset '{ds.name}': patch_px and mpp must be positive")
    if ds.split.by not in SPLIT_UNITS:
        raise UserError(f"dataset.split.by '{ds.split.by}': use slide, patient or group")


def make_plan(
    ds: DatasetSpec, project: ProjectSpec, registry: pd.DataFrame, detector: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All planned patch rows (without pixels) and the kept annotation points."""
    mapper = ClassMapper(project.class_names, ds.class_map)
    rng = np.random.default_rng(int(ds.split.seed))
    frames, points = [], []
    for i, src in enumerate(ds.sources):
        where, kind = f"dataset.sources[{i}]", src.type
        if kind in planning.ANNOTATION_TYPES:
            f, p = planning.plan_annotations(src, ds, registry, mapper, rng, where)
            frames, points = frames + f, points + p
        elif kind in planning.SLIDE_TYPES:
            frames += planning.plan_slide_labels(src, ds, registry, mapper, rng, where, detector)
        elif kind in planning.IMAGE_TYPES:
            frames.append(plan_images(src, mapper, where))
        else:
            kinds = sorted(
                {*planning.ANNOTATION_TYPES, *planning.SLIDE_TYPES, *planning.IMAGE_TYPES}
            )
            raise UserError(f"{where}.type '{kind}' is unknown (use one of {', '.join(kinds)})")
    frames = [f for f in frames if len(f)]
    if not frames:
        raise UserError(
            f"dataset '{ds.name}': the sources give no patches (check min_overlap, classes)"
        )
    plan = pd.concat(frames, ignore_index=True)
    pts = pd.concat(points, ignore_index=True) if points else pd.DataFrame()
    return plan, pts


def _groups(ds: DatasetSpec, plan: pd.DataFrame, registry: pd.DataFrame) -> pd.Series:
    """The split unit of every row: slide name, or a registry column (patient / group)."""
    by = ds.split.by
    from_slides = plan["slide_id"].astype(str) != ""
    group = (
        plan["group"].copy() if "group" in plan else pd.Series(None, index=plan.index, dtype=object)
    )
    if by == "slide":
        group[from_slides] = plan.loc[from_slides, "slide"]
        return group.astype(str)
    col = ds.split.column or by
    if from_slides.any():
        if col not in registry.columns:
            raise UserError(
                f"dataset.split.by={by}: the registry has no '{col}' column "
                "(add it with slides.metadata, or set dataset.split.column)"
            )
        lookup = registry.set_index("slide_id")[col]
        vals = plan.loc[from_slides, "slide_id"].map(lookup)
        group[from_slides] = vals.where(vals.notna(), plan.loc[from_slides, "slide"]).astype(str)
    return group.astype(str)


def finish_plan(
    ds: DatasetSpec, classes: list[str], plan: pd.DataFrame, registry: pd.DataFrame
) -> pd.DataFrame:
    """Patch ids, labels, groups, splits, order and pyramid levels of a plan."""
    mpp, patch_px = float(ds.mpp or 0), int(ds.patch_px)
    slide_rows = plan["slide_id"].astype(str) != ""
    plan.loc[slide_rows, "mpp"] = mpp
    plan["patch_px"] = patch_px
    plan["label"] = [classes[i] for i in plan["label_idx"]]
    keys = [
        f"{s}:{x}:{y}:{mpp}:{patch_px}:{lab}"
        for s, x, y, lab in zip(plan["slide_id"], plan["x"], plan["y"], plan["label"], strict=True)
    ]
    ids = [hashlib.sha1(k.encode()).hexdigest()[:16] for k in keys]
    plan["patch_id"] = np.where(slide_rows, ids, plan.get("patch_id", pd.Series(ids)).astype(str))
    plan = plan.drop_duplicates("patch_id", ignore_index=True)
    plan["group"] = _groups(ds, plan, registry)
    plan["split"] = assign_splits(
        plan, dict(ds.split.fractions), int(ds.split.seed), len(classes), str(ds.split.sized_by)
    )
    plan = in_order(plan)
    levels = {}
    for sid in plan.loc[plan["slide_id"].astype(str) != "", "slide_id"].unique():
        r = registry.set_index("slide_id").loc[sid]
        levels[sid] = pyramid_level(str(r["path"]), float(r["mpp_x"]), mpp)
    plan["pyramid_level"] = plan["slide_id"].map(levels).fillna(-1).astype(np.int64)
    return plan


def in_order(plan: pd.DataFrame) -> pd.DataFrame:
    """Rows in a dataset's stored order: split (train, val, test), slide, y, x, patch id."""
    plan = plan.assign(_order=plan["split"].map({s: i for i, s in enumerate(SPLITS)}))
    plan = plan.sort_values(["_order", "slide", "y", "x", "patch_id"], kind="mergesort")
    return plan.drop(columns="_order").reset_index(drop=True)


def portable_sources(sources: pd.Series, workspace: Path) -> pd.Series:
    """The `source` column as stored: file paths relative to the workspace (else file names).

    The dataset version hashes the manifest, so it must not hold where this checkout lies;
    non-path origins such as `registry:<column>` are kept as they are.
    """
    out = {}
    for s in sources.dropna().unique():
        text = str(s)
        path = os.path.abspath(text) if os.path.exists(text) else text
        out[s] = portable_path(path, workspace)
    return sources.map(out).where(sources.notna(), sources)


def _progress(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="patch", desc="cutting", leave=False, mininterval=1.0)
    return bar, bar.update


def build_dataset(
    ds: DatasetSpec,
    project: ProjectSpec,
    stores: Stores,
    *,
    detector: Any,
    targets: Targets | None = None,
    amend: Amend | None = None,
) -> dict[str, Any]:
    """Build a dataset into `<stores.data>/datasets/<name>/` and return a summary.

    Args:
        ds: The dataset to build.
        project: The project (its classes give the label indices).
        stores: The project's stores (workspace for `dvc_add`, data folder for registry/datasets).
        detector: Tissue detector (`mask(rgb)`) for slide-label sources on slides whose registry
            row has no stored tissue mask.
        targets: a dense task's targets (segmentation masks, detection cells): it plans the
            patches and writes its own files beside the shards (None: patch labels only).
        amend: the loop's corrections: takes the finished plan and the registry, returns the
            corrected plan and the lineage written as `lineage.json` (None: nothing to amend).

    Raises:
        UserError: a bad spec or input; nothing is written then.
    """
    t0 = time.perf_counter()
    check_spec(ds)
    workspace = Path(stores.workspace)
    if ds.dvc_add and not (workspace / ".dvc").is_dir():
        raise UserError(f"dataset.dvc_add: {workspace} is not a DVC repo (run `dvc init` there)")
    final = dataset_dir(stores, ds.name)
    sweep_stale(final.parent)  # a killed build's `.<name>.tmp-<pid>...` folders
    sweep_stale(final.parent / ".versions")
    registry = load_registry(stores)
    plan, points = (targets.plan if targets else make_plan)(ds, project, registry, detector)
    duplicates = duplicate_images(plan, project.class_names)  # finish_plan keeps the first
    for line in duplicate_note(duplicates):
        print(f"dataset {ds.name}: {line}", flush=True)
    plan = finish_plan(ds, project.class_names, plan, registry)
    lineage = None
    if amend is not None:
        plan, lineage = amend(plan, registry)
        plan = in_order(plan)
    print(f"dataset {ds.name}: {len(plan)} patches; {split_counts(plan)}")

    def lock() -> Any:  # concurrent builds of one dataset publish one after the other
        return store_lock(final, f"dataset {ds.name}", **in_stores(stores))

    slides = {str(r.slide_id): (str(r.path), float(r.mpp_x)) for r in registry.itertuples()}
    with atomic_dir(final, guard=lock) as tmp:
        bar, update = _progress(len(plan))
        with bar:
            colour = write_shards(
                plan, tmp, int(ds.patch_px), float(ds.shard_mb), int(ds.workers), slides, update
            )
        manifest = plan.reindex(columns=COLUMNS)
        manifest["source"] = portable_sources(manifest["source"], workspace)
        manifest.to_parquet(tmp / MANIFEST, index=False)
        if len(points):
            points["source"] = portable_sources(points["source"], workspace)
            points.to_parquet(tmp / "points.parquet", index=False)
        extra = {
            "name": str(ds.name),
            "patch_px": int(ds.patch_px),
            "mpp": float(ds.mpp or 0),
            "split_by": str(ds.split.by),
            "seed": int(ds.split.seed),
        }
        if targets:  # the dense task's own files (masks, cells) and their statistics
            extra["targets"] = targets.write(plan, tmp, ds, project, slides)
        stats = compute_stats(manifest, project.class_names, colour.result(), extra, duplicates)
        write_stats(tmp, stats)
        pictures = write_pictures(
            tmp, manifest, project.class_dicts(), int(ds.patch_px), int(ds.split.seed)
        )
        if targets:
            pictures.update(targets.pictures(tmp, plan, project, ds))
        write_report(tmp, stats, pictures)
        if lineage:
            write_json(tmp / LINEAGE, lineage)
    with lock():
        version = dataset_version(final)
        if ds.dvc_add:
            _dvc_add(workspace, final)
    seconds = time.perf_counter() - t0
    return {
        "name": str(ds.name),
        "patches": len(plan),
        "version": version,
        "dir": str(final),
        "report": str(final / "report" / "report.md"),
        "seconds": round(seconds, 2),
        "seconds_per_1000": round(1000 * seconds / max(len(plan), 1), 2),
        "splits": stats["by_split"],
        "duplicates_dropped": duplicates["dropped"],
    }


def _dvc_add(workspace: Path, folder: Path) -> None:
    """`dvc add` the dataset folder in the workspace's DVC repo."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(workspace)) as repo:
            repo.add(str(folder))
    except DvcException as e:
        raise UserError(f"dvc add {folder}: {e}") from None
