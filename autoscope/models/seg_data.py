"""Segmentation patch data: image and mask splits in memory, flips/rot90s applied to both.

The images come from the shards as for classification, the masks from the dataset's
`masks/` files (`autoscope.datasets.seg_masks`); a training batch is gathered as one 4-channel
uint8 copy (RGB + mask) turned by one dihedral view per patch, so image and mask stay aligned.
The photometric stage (stain, colour, normalisation) runs on the device as for classification.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from autoscope.errors import UserError
from autoscope.models.data import SPLITS, PatchDataModule, _Batches, load_split, resize_u8
from autoscope.models.seg_losses import IGNORE


def resize_masks(y: torch.Tensor, side_px: int) -> torch.Tensor:
    """Nearest-neighbour resize of uint8 `[N,H,W]` masks (labels are never blended)."""
    if y.shape[1] == side_px and y.shape[2] == side_px:
        return y
    out = torch.nn.functional.interpolate(y[:, None].float(), size=(side_px, side_px))
    return out[:, 0].to(torch.uint8)


class _JointDihedral(Dataset):
    """Training batches: indices -> (uint8 images, int64 masks) turned by the same random view."""

    def __init__(self, xy: np.ndarray, generator: torch.Generator, geometric: bool) -> None:
        self.xy, self.generator, self.geometric = xy, generator, geometric

    def __len__(self) -> int:
        return len(self.xy)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from autoscope.datasets.augment import dihedral_codes, gather_dihedral

        i = np.asarray(idx, dtype=np.int64)
        codes = dihedral_codes(len(i), self.generator).numpy() if self.geometric else None
        both = torch.from_numpy(gather_dihedral(self.xy, i, codes))
        return both[..., :3].contiguous(), both[..., 3].long()


class SegDataModule(PatchDataModule):
    """Train/val/test image + mask splits of one segmentation dataset (arguments as
    `PatchDataModule`; `augment.views_on` is always `loader`: views must turn the masks too).

    `.splits[split]` is `(uint8 [N,H,W,3], uint8 [N,H,W] masks, 255 = ignore)`.
    """

    def __init__(self, dataset_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(dataset_dir, **kwargs)
        self.views_on = "loader"  # the photometric stage must not turn images without masks
        self.class_names: list[str] = []  # from the dataset's stats.json (per-class metrics)
        self.class_colors: list[str] = []  # their colours (the test report's overlays)

    def setup(self, stage: str | None = None) -> None:
        """Load every split's images and masks once (later calls are no-ops)."""
        from autoscope.datasets.seg_masks import load_masks

        if self.splits:
            return
        stats = self.dataset_dir / "stats.json"
        targets = json.loads(stats.read_text()).get("targets", {}) if stats.is_file() else {}
        if targets.get("kind") != "segmentation":
            raise UserError(
                f"{self.dataset_dir}: not a segmentation dataset (build it with a project of "
                "task tissue_segmentation)"
            )
        self.class_names = list(targets.get("classes") or [])
        self.class_colors = list(targets.get("colors") or [])
        for split in SPLITS:
            x, _ = load_split(self.dataset_dir, split)
            xt = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))
            yt = torch.from_numpy(load_masks(self.dataset_dir, split))
            if self.input_px:
                xt, yt = resize_u8(xt, int(self.input_px)), resize_masks(yt, int(self.input_px))
            bad = (yt != IGNORE) & (yt >= self.num_classes)
            if bool(bad.any()):
                raise UserError(
                    f"{self.dataset_dir}: split '{split}' has mask values outside "
                    f"0..{self.num_classes - 1} and {IGNORE} (project.classes and the dataset "
                    "disagree)"
                )
            self.splits[split] = (xt, yt)
        if len(self.splits["train"][1]) == 0 or len(self.splits["val"][1]) == 0:
            raise UserError(f"{self.dataset_dir}: the train and val splits must not be empty")
        self._fit = self.splits["train"]
        if self.fit_on == "train+val":
            (xa, ya), (xb, yb) = self.splits["train"], self.splits["val"]
            self._fit = (torch.cat([xa, xb]), torch.cat([ya, yb]))

    def class_counts(self) -> list[int]:
        """Annotated training pixels per class (what `balanced` class weights are fitted to)."""
        y = self._fit[1]
        y = y[y != IGNORE].long()
        return torch.bincount(y, minlength=self.num_classes)[: self.num_classes].tolist()

    def _loader(self, split: str, train: bool) -> DataLoader:
        x, y = self._fit if train else self.splits[split]
        if not train:
            batches = BatchSampler(SequentialSampler(range(len(y))), self.eval_batch_size, False)
            return DataLoader(_Batches(x, y), sampler=batches, batch_size=None, num_workers=0)
        g = torch.Generator().manual_seed(self.seed)
        drop = len(y) > self.batch_size
        batches = BatchSampler(RandomSampler(range(len(y)), generator=g), self.batch_size, drop)
        views = torch.Generator().manual_seed(self.seed + 2)
        xy = torch.cat([x, y[..., None]], dim=3).numpy()  # RGB + mask: one gather, one view
        square = x.shape[1] == x.shape[2]
        data = _JointDihedral(xy, views, self.geometric and square)
        return DataLoader(data, sampler=batches, batch_size=None, num_workers=0)
