"""Detection datasets: patches holding annotated cells, their cells in patch pixels, a count table.

`DetTargets` plugs into `autoscope.datasets.build.build_dataset` (`project.task: cell_detection`):
cells come from points, nucleus polygons or instance masks (`det_sources`); patches lie on the
dataset grid (`stride_px`, `patch_px` at `mpp`) wherever at least one cell centre falls inside,
labelled (for the stratified splits) by their most frequent class. `cells.parquet` holds every
cell whose centre lies inside a patch, and the cells just outside its border (`inside` false) so
that training targets near the border are complete; metrics count only the inside ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.datasets import plan as planning
from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.det_sources import read_cells
from autoscope.datasets.spec import DatasetSpec
from autoscope.errors import UserError
from autoscope.project import ProjectSpec
from autoscope.slides import samplers
from autoscope.slides.units import level0_px

CELLS = "cells.parquet"  # per patch: x_px, y_px (patch pixels at mpp), label_idx, inside, outline
MARGIN_UM = 12.0  # cells this far outside a patch still shape its targets near the border


def _grid_counts(
    xy: np.ndarray, fp: int, stride: int, w: int, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lattice corners (multiples of `stride`, patch inside the slide) and the cells inside each."""
    kx = np.arange(0, max(w - fp, 0) + 1, stride)
    ky = np.arange(0, max(h - fp, 0) + 1, stride)
    counts = np.zeros((len(ky), len(kx)), np.int64)
    reach = -(-fp // stride)
    for dx in range(reach):
        for dy in range(reach):
            i = np.floor(xy[:, 0] / stride).astype(np.int64) - dx
            j = np.floor(xy[:, 1] / stride).astype(np.int64) - dy
            ok = (i >= 0) & (i < len(kx)) & (j >= 0) & (j < len(ky))
            ok &= (xy[:, 0] >= i * stride) & (xy[:, 0] < i * stride + fp)
            ok &= (xy[:, 1] >= j * stride) & (xy[:, 1] < j * stride + fp)
            np.add.at(counts, (j[ok], i[ok]), 1)
    jj, ii = np.nonzero(counts)
    return np.stack([kx[ii], ky[jj]], 1).astype(np.int64), counts[jj, ii]


class DetTargets:
    """The detection family's part of `dataset build` (see `autoscope.datasets.targets`)."""

    def __init__(self) -> None:
        self.cells = pd.DataFrame()

    def plan(
        self, ds: DatasetSpec, project: ProjectSpec, registry: pd.DataFrame, detector: Any
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Grid patches with at least one cell centre inside, and every cell (the points)."""
        mapper = ClassMapper(project.class_names, ds.class_map)
        rng = np.random.default_rng(int(ds.split.seed))
        mpp, frames, cells = float(ds.mpp or 0), [], []
        for i, src in enumerate(ds.sources):
            found = read_cells(src, registry, mapper, f"dataset.sources[{i}]")
            cells.append(found)
            for sid, group in found.groupby("slide_id", sort=True):
                row = registry.set_index("slide_id").loc[sid]
                row["slide_id"] = sid
                slide_mpp = float(row["mpp_x"])
                fp = level0_px(slide_mpp, mpp, ds.patch_px)
                stride = level0_px(slide_mpp, mpp, ds.stride(src))
                xy = group[["x", "y"]].to_numpy(float)
                corners, _ = _grid_counts(
                    xy, fp, stride, int(row["width_px"]), int(row["height_px"])
                )
                corners = corners[
                    samplers.cap(len(corners), ds.setting(src, "max_patches_per_slide"), rng)
                ]
                labels = self._dominant(
                    corners, xy, group["label_idx"].to_numpy(), fp, len(mapper.names)
                )
                frames.append(
                    planning._rows(row, corners, labels, "cell", str(group["source"].iloc[0]))
                )
        self.cells = pd.concat(cells, ignore_index=True) if cells else pd.DataFrame()
        frames = [f for f in frames if len(f)]
        if not frames:
            raise UserError(f"dataset '{ds.name}': the sources give no cells inside any patch")
        points = self.cells.drop(columns=["outline"])
        return pd.concat(frames, ignore_index=True), points

    @staticmethod
    def _dominant(
        corners: np.ndarray, xy: np.ndarray, lab: np.ndarray, fp: int, n: int
    ) -> np.ndarray:
        out = np.zeros(len(corners), np.int64)
        for k, (x0, y0) in enumerate(corners):
            inside = (
                (xy[:, 0] >= x0) & (xy[:, 0] < x0 + fp) & (xy[:, 1] >= y0) & (xy[:, 1] < y0 + fp)
            )
            out[k] = int(np.bincount(lab[inside], minlength=n).argmax())
        return out

    def patch_cells(
        self, plan: pd.DataFrame, ds: DatasetSpec, slides: dict[str, tuple[str, float]]
    ) -> pd.DataFrame:
        """Every patch's cells in patch pixels (inside ones and those within `MARGIN_UM`)."""
        import shapely
        from shapely import affinity

        mpp, side, rows = float(ds.mpp or 0), int(ds.patch_px), []
        by_slide = {k: g for k, g in self.cells.groupby("slide_id")}
        for p in plan.itertuples():
            g = by_slide.get(p.slide_id)
            if g is None:
                continue
            slide_mpp = float(slides[p.slide_id][1])
            scale = slide_mpp / mpp  # patch px per level-0 px
            margin = MARGIN_UM / slide_mpp
            fp = level0_px(slide_mpp, mpp, side)
            near = g[(g["x"] >= p.x - margin) & (g["x"] < p.x + fp + margin)]
            near = near[(near["y"] >= p.y - margin) & (near["y"] < p.y + fp + margin)]
            for c in near.itertuples():
                x_px, y_px = (c.x - p.x) * scale, (c.y - p.y) * scale
                outline = None
                if isinstance(c.outline, str) and c.outline:
                    geom = affinity.affine_transform(
                        shapely.from_wkt(c.outline),
                        [scale, 0, 0, scale, -p.x * scale, -p.y * scale],
                    )
                    outline = json.dumps(np.round(np.asarray(geom.exterior.coords), 2).tolist())
                inside = bool(0 <= x_px < side and 0 <= y_px < side)
                rows.append((p.patch_id, x_px, y_px, int(c.label_idx), inside, outline))
        cols = ["patch_id", "x_px", "y_px", "label_idx", "inside", "outline"]
        out = pd.DataFrame(rows, columns=cols)
        return out.astype({"x_px": np.float32, "y_px": np.float32, "label_idx": np.int64})

    def write(
        self,
        plan: pd.DataFrame,
        tmp: Path,
        ds: DatasetSpec,
        project: ProjectSpec,
        slides: dict[str, tuple[str, float]],
    ) -> dict[str, Any]:
        """`cells.parquet` beside the shards; returns the per-class, per-split cell counts."""
        cells = self.patch_cells(plan, ds, slides)
        cells.to_parquet(tmp / CELLS, index=False)
        names = project.class_names
        split = plan.set_index("patch_id")["split"]
        inside = cells[cells["inside"]]
        table = {
            s: {
                n: int(((inside["label_idx"] == k) & (inside["patch_id"].map(split) == s)).sum())
                for k, n in enumerate(names)
            }
            for s in ("train", "val", "test")
        }
        return {
            "kind": "detection",
            "classes": names,
            "colors": [c["color"] for c in project.class_dicts()],
            "cells": int(len(inside)),
            "cells_per_class": {
                n: int((inside["label_idx"] == k).sum()) for k, n in enumerate(names)
            },
            "cells_by_split": table,
            "cells_per_patch": round(len(inside) / max(len(plan), 1), 2),
            "with_outline": int(inside["outline"].notna().sum()),
        }

    def pictures(
        self, tmp: Path, plan: pd.DataFrame, project: ProjectSpec, ds: DatasetSpec
    ) -> dict[str, str]:
        """`report/cells_montage.png`: sample patches with their cells drawn in class colours."""
        from PIL import Image, ImageDraw

        from autoscope.datasets.report import MONTAGE_SIDE, _montage
        from autoscope.datasets.store import open_shards

        shards, side = open_shards(tmp), int(ds.patch_px)
        cells = pd.read_parquet(tmp / CELLS)
        rng = np.random.default_rng(int(ds.split.seed))
        pick = plan.iloc[
            np.sort(rng.choice(len(plan), min(len(plan), MONTAGE_SIDE**2), replace=False))
        ]
        colours = [c["color"] for c in project.class_dicts()]
        by_patch = {k: g for k, g in cells[cells["inside"]].groupby("patch_id")}
        images = []
        for p in pick.itertuples():
            img = Image.fromarray(np.asarray(shards[p.shard][p.index]))
            draw = ImageDraw.Draw(img)
            g = by_patch.get(p.patch_id)
            for c in [] if g is None else g.itertuples():
                r = max(2.0, side / 40)
                draw.ellipse(
                    [c.x_px - r, c.y_px - r, c.x_px + r, c.y_px + r],
                    outline=colours[c.label_idx],
                    width=2,
                )
            images.append(np.asarray(img))
        out = tmp / "report"
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_montage(images, side)).save(out / "cells_montage.png")
        return {"cells": "cells_montage.png"}
