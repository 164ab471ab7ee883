"""`dataset build`: plan and split, then shards, manifest, stats and report, renamed into place."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.datasets import plan as planning
from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.imports import plan_images
from autoscope.datasets.report import compute_stats, write_pictures, write_report, write_stats
from autoscope.datasets.shards import pyramid_level, write_shards
from autoscope.datasets.splits import SPLITS, assign_splits, split_counts
from autoscope.datasets.store import MANIFEST, dataset_dir, dataset_version, publish
from autoscope.errors import UserError

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


def with_defaults(cfg: Any) -> Any:
    """cfg whose `dataset` is completed by defaults (a minimal YAML: name, sources, patch_px)."""
    from omegaconf import OmegaConf, open_dict

    defaults = {
        "class_map": {},
        "patch_px": 224,
        "mpp": cfg.project.target_mpp,
        "stride_px": None,
        "min_overlap": 0.5,
        "max_patches_per_slide": None,
        "label_level": "tissue",
        "split": {
            "by": "slide",
            "column": None,
            "seed": int(cfg.seed),
            "fractions": {"train": 0.7, "val": 0.15, "test": 0.15},
        },
        "shard_mb": 256,
        "workers": 1,
        "dvc_add": False,
    }
    given = OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") else {}
    if given.get("split", {}).get("fractions"):
        defaults["split"]["fractions"] = {}
    out = cfg.copy()
    with open_dict(out):
        out.dataset = OmegaConf.merge(defaults, given)
    return out


def _check(ds: Any) -> None:
    if not ds.get("name"):
        raise UserError("no dataset selected: pass dataset=<name> (conf/dataset/<name>.yaml)")
    if not ds.get("sources"):
        raise UserError(f"dataset '{ds.name}': dataset.sources is empty")
    if int(ds.get("patch_px") or 0) <= 0 or float(ds.get("mpp") or 0) <= 0:
        raise UserError(f"dataset '{ds.name}': patch_px and mpp must be positive")
    if ds.split.by not in ("slide", "patient", "group"):
        raise UserError(f"dataset.split.by '{ds.split.by}': use slide, patient or group")


def make_plan(cfg: Any, registry: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All planned patch rows (without pixels) and the kept annotation points."""
    ds = cfg.dataset
    mapper = ClassMapper(cfg.project.classes, ds.get("class_map"))
    rng = np.random.default_rng(int(ds.split.seed))
    frames, points = [], []
    for i, src in enumerate(ds.sources):
        where, kind = f"dataset.sources[{i}]", src.get("type")
        if kind in planning.ANNOTATION_TYPES:
            f, p = planning.plan_annotations(src, ds, registry, mapper, rng, where)
            frames, points = frames + f, points + p
        elif kind in planning.SLIDE_TYPES:
            frames += planning.plan_slide_labels(cfg, src, ds, registry, mapper, rng, where)
        elif kind in planning.IMAGE_TYPES:
            frames.append(plan_images(src, ds, mapper, where))
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


def _groups(cfg: Any, plan: pd.DataFrame, registry: pd.DataFrame) -> pd.Series:
    """The split unit of every row: slide name, or a registry column (patient / group)."""
    by = cfg.dataset.split.by
    from_slides = plan["slide_id"].astype(str) != ""
    group = (
        plan["group"].copy() if "group" in plan else pd.Series(None, index=plan.index, dtype=object)
    )
    if by == "slide":
        group[from_slides] = plan.loc[from_slides, "slide"]
        return group.astype(str)
    col = cfg.dataset.split.get("column") or by
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


def _finish_plan(cfg: Any, plan: pd.DataFrame, registry: pd.DataFrame) -> pd.DataFrame:
    ds = cfg.dataset
    classes = [str(c["name"]) for c in cfg.project.classes]
    slide_rows = plan["slide_id"].astype(str) != ""
    plan.loc[slide_rows, "mpp"] = float(ds.mpp)
    plan["patch_px"] = int(ds.patch_px)
    plan["label"] = [classes[i] for i in plan["label_idx"]]
    mpp, patch_px = float(ds.mpp), int(ds.patch_px)
    keys = [
        f"{s}:{x}:{y}:{mpp}:{patch_px}:{lab}"
        for s, x, y, lab in zip(plan["slide_id"], plan["x"], plan["y"], plan["label"], strict=True)
    ]
    ids = [hashlib.sha1(k.encode()).hexdigest()[:16] for k in keys]
    plan["patch_id"] = np.where(slide_rows, ids, plan.get("patch_id", pd.Series(ids)).astype(str))
    plan = plan.drop_duplicates("patch_id", ignore_index=True)
    plan["group"] = _groups(cfg, plan, registry)
    plan["split"] = assign_splits(plan, ds.split.fractions, int(ds.split.seed), len(classes))
    plan["_order"] = plan["split"].map({s: i for i, s in enumerate(SPLITS)})
    plan = plan.sort_values(["_order", "slide", "y", "x", "patch_id"], kind="mergesort")
    plan = plan.drop(columns="_order").reset_index(drop=True)
    levels = {}
    for sid in plan.loc[plan["slide_id"].astype(str) != "", "slide_id"].unique():
        r = registry.set_index("slide_id").loc[sid]
        levels[sid] = pyramid_level(str(r["path"]), float(r["mpp_x"]), float(ds.mpp))
    plan["pyramid_level"] = plan["slide_id"].map(levels).fillna(-1).astype(np.int64)
    return plan


def _progress(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="patch", desc="cutting", leave=False, mininterval=1.0)
    return bar, bar.update


def build_dataset(cfg: Any) -> dict[str, Any]:
    """Build `cfg.dataset` into data/<project>/datasets/<name>/ and return a summary."""
    from autoscope.slides.registry import load_registry

    t0 = time.perf_counter()
    cfg = with_defaults(cfg)
    ds = cfg.dataset
    _check(ds)
    workspace = Path(cfg.paths.workspace)
    if ds.dvc_add and not (workspace / ".dvc").is_dir():
        raise UserError(f"dataset.dvc_add: {workspace} is not a DVC repo (run `dvc init` there)")
    registry = load_registry(cfg)
    plan, points = make_plan(cfg, registry)
    plan = _finish_plan(cfg, plan, registry)
    print(f"dataset {ds.name}: {len(plan)} patches; {split_counts(plan)}")
    final = dataset_dir(cfg)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    slides = {str(r.slide_id): (str(r.path), float(r.mpp_x)) for r in registry.itertuples()}
    try:
        bar, update = _progress(len(plan))
        with bar:
            colour = write_shards(
                plan,
                tmp,
                int(ds.patch_px),
                float(ds.get("shard_mb", 256)),
                int(ds.get("workers", 1)),
                slides,
                update,
            )
        manifest = plan.reindex(columns=COLUMNS)
        manifest.to_parquet(tmp / MANIFEST, index=False)
        if len(points):
            points.to_parquet(tmp / "points.parquet", index=False)
        extra = {
            "name": str(ds.name),
            "patch_px": int(ds.patch_px),
            "mpp": float(ds.mpp),
            "split_by": str(ds.split.by),
            "seed": int(ds.split.seed),
        }
        stats = compute_stats(
            manifest, [c["name"] for c in cfg.project.classes], colour.result(), extra
        )
        write_stats(tmp, stats)
        pictures = write_pictures(
            tmp, manifest, list(cfg.project.classes), int(ds.patch_px), int(ds.split.seed)
        )
        write_report(tmp, stats, pictures)
        publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    version = dataset_version(final)
    if ds.get("dvc_add"):
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
