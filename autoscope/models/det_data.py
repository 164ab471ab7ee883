"""Detection patch data: images plus per-class centre heatmaps, turned together; truth points kept.

The targets are drawn once at setup from the dataset's `cells.parquet`
(`autoscope.datasets.detection`): per class a Gaussian of `sigma_um` round every cell centre
(max over cells, cells just outside the patch included), stored as uint8 channels beside the
RGB so that one dihedral gather turns image and targets alike (as `seg_data` does for masks).
`.splits[split]` is `(uint8 [N,H,W,3], uint8 [N,H,W,C] heatmaps x 255)`; `.truth[split]` holds
per patch the float `[K, 4]` x, y (input pixels), class, inside (1: centre in the patch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from autoscope.errors import UserError
from autoscope.models.data import SPLITS, PatchDataModule, load_split, resize_u8
from autoscope.models.seg_data import _JointDihedral

SIGMA_UM = 2.0  # Gaussian target radius when the model config gives none (about a nucleus radius)


def draw_heatmaps(
    cells: list[np.ndarray], side_px: int, num_classes: int, sigma_px: float
) -> np.ndarray:
    """uint8 `[N, side, side, C]` heatmaps (x 255) of per-patch cells (`[K, 3]` x, y, class)."""
    out = np.zeros((len(cells), side_px, side_px, num_classes), np.uint8)
    grid = np.arange(side_px, dtype=np.float32) + 0.5
    reach = int(np.ceil(3 * sigma_px))
    for n, pts in enumerate(cells):
        for x, y, c in pts:
            x0, x1 = max(0, int(x) - reach), min(side_px, int(x) + reach + 1)
            y0, y1 = max(0, int(y) - reach), min(side_px, int(y) + reach + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            gx = np.exp(-((grid[x0:x1] - x) ** 2) / (2 * sigma_px**2))
            gy = np.exp(-((grid[y0:y1] - y) ** 2) / (2 * sigma_px**2))
            g = np.round(255 * gy[:, None] * gx[None, :]).astype(np.uint8)
            view = out[n, y0:y1, x0:x1, int(c)]
            np.maximum(view, g, out=view)
    return out


class _Turned(_JointDihedral):
    """Training batches: indices -> (uint8 images, uint8 heatmaps `[B,H,W,C]`) turned by one
    random view (`seg_data._JointDihedral` with every channel after the RGB kept)."""

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from autoscope.datasets.augment import dihedral_codes, gather_dihedral

        i = np.asarray(idx, dtype=np.int64)
        codes = dihedral_codes(len(i), self.generator).numpy() if self.geometric else None
        both = torch.from_numpy(gather_dihedral(self.xy, i, codes))
        return both[..., :3].contiguous(), both[..., 3:].contiguous()


class _Indexed(Dataset):
    """Evaluation batches: indices -> (images, heatmaps, the indices) in order."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i = torch.as_tensor(idx)
        return self.x.index_select(0, i), self.y.index_select(0, i), i


class DetDataModule(PatchDataModule):
    """Train/val/test images, heatmaps and truth points of one detection dataset.

    Arguments as `PatchDataModule` plus `sigma_um` (the Gaussian targets' radius, µm); the
    flips/rot90s are drawn in the training loader (they turn the heatmaps too).
    """

    def __init__(
        self, dataset_dir: str | Path, sigma_um: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(dataset_dir, **kwargs)
        self.views_on = "loader"
        self.sigma_um = float(sigma_um or SIGMA_UM)
        self.truth: dict[str, list[np.ndarray]] = {}
        self.class_names: list[str] = []
        self.class_colors: list[str] = []
        self.mpp = 0.0  # µm per input pixel

    def setup(self, stage: str | None = None) -> None:
        """Load images, draw the heatmaps and keep the truth points (later calls are no-ops)."""
        import pandas as pd

        from autoscope.datasets.detection import CELLS
        from autoscope.datasets.store import read_manifest

        if self.splits:
            return
        if not (self.dataset_dir / CELLS).is_file():
            raise UserError(
                f"{self.dataset_dir}: not a detection dataset (no {CELLS}; build it with a project "
                "of task cell_detection)"
            )
        stats = json.loads((self.dataset_dir / "stats.json").read_text()).get("targets", {})
        self.class_names = list(stats.get("classes") or [])
        self.class_colors = list(stats.get("colors") or [])
        m = read_manifest(self.dataset_dir, ["patch_id", "split", "mpp", "patch_px"])
        cells = pd.read_parquet(self.dataset_dir / CELLS)
        by_patch = {k: g for k, g in cells.groupby("patch_id")}
        side = int(m["patch_px"].iloc[0])
        scale = float(self.input_px or side) / side
        self.mpp = float(m["mpp"].iloc[0]) / scale
        sigma_px = self.sigma_um / self.mpp
        empty = np.zeros((0, 4), np.float32)
        for split in SPLITS:
            x, _ = load_split(self.dataset_dir, split)
            xt = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))
            if self.input_px:
                xt = resize_u8(xt, int(self.input_px))
            ids = m.loc[m["split"] == split, "patch_id"]
            pts = []
            for pid in ids:
                g = by_patch.get(pid)
                arr = (
                    empty
                    if g is None
                    else g[["x_px", "y_px", "label_idx", "inside"]].to_numpy(np.float32)
                )
                arr = arr.copy()
                arr[:, :2] *= scale
                pts.append(arr)
            if any(len(p) and p[:, 2].max() >= self.num_classes for p in pts):
                raise UserError(
                    f"{self.dataset_dir}: cells of classes outside 0..{self.num_classes - 1}"
                )
            heat = draw_heatmaps([p[:, :3] for p in pts], xt.shape[1], self.num_classes, sigma_px)
            self.splits[split] = (xt, torch.from_numpy(heat))
            self.truth[split] = pts  # x, y, class, inside (`det_points.count_matches`)
        if len(self.splits["train"][1]) == 0 or len(self.splits["val"][1]) == 0:
            raise UserError(f"{self.dataset_dir}: the train and val splits must not be empty")
        self._fit = self.splits["train"]
        if self.fit_on == "train+val":
            (xa, ya), (xb, yb) = self.splits["train"], self.splits["val"]
            self._fit = (torch.cat([xa, xb]), torch.cat([ya, yb]))

    def class_counts(self) -> list[int]:
        """Training cells per class."""
        pts = self.truth["train"] + (self.truth["val"] if self.fit_on == "train+val" else [])
        labels = (
            np.concatenate([p[:, 2] for p in pts]).astype(np.int64)
            if pts
            else np.zeros(0, np.int64)
        )
        return np.bincount(labels, minlength=self.num_classes)[: self.num_classes].tolist()

    def _loader(self, split: str, train: bool) -> DataLoader:
        x, y = self._fit if train else self.splits[split]
        if not train:
            batches = BatchSampler(SequentialSampler(range(len(y))), self.eval_batch_size, False)
            return DataLoader(_Indexed(x, y), sampler=batches, batch_size=None, num_workers=0)
        g = torch.Generator().manual_seed(self.seed)
        drop = len(y) > self.batch_size
        batches = BatchSampler(RandomSampler(range(len(y)), generator=g), self.batch_size, drop)
        views = torch.Generator().manual_seed(self.seed + 2)
        xy = torch.cat([x, y], dim=3).numpy()  # RGB + heatmaps: one gather, one view
        data = _Turned(xy, views, self.geometric and x.shape[1] == x.shape[2])
        return DataLoader(data, sampler=batches, batch_size=None, num_workers=0)
