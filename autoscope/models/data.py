"""Patch data for training: whole splits decoded once into memory, augmented per batch.

The shards are read once (uint8, resized once to the model's `input_px` when it differs); every
epoch only indexes the in-memory tensors and augments the batch on the fly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from autoscope.errors import UserError

SPLITS = ("train", "val", "test")


def load_split(dataset_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split as (uint8 `[N,H,W,3]`, int64 `[N]`) through `autoscope.datasets.store`."""
    from autoscope.datasets.store import load_split as store_load

    return store_load(dataset_dir, split)


def resize_u8(x: torch.Tensor, side_px: int, chunk: int = 1024) -> torch.Tensor:
    """Resize uint8 `[N,H,W,3]` patches to `side_px` once (antialiased bilinear), in chunks."""
    if x.shape[1] == side_px and x.shape[2] == side_px:
        return x
    out = torch.empty((x.shape[0], side_px, side_px, 3), dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].permute(0, 3, 1, 2).float()
        part = torch.nn.functional.interpolate(
            part, size=(side_px, side_px), mode="bilinear", antialias=True, align_corners=False
        )
        out[i : i + chunk] = part.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out


class _Batches(Dataset):
    """Index a pair of in-memory tensors with a whole list of indices (one batch per item)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.as_tensor(idx)
        return self.x.index_select(0, i), self.y.index_select(0, i)


class PatchDataModule(L.LightningDataModule):
    """Train/val/test splits of one patch dataset, held in memory as uint8 tensors.

    Args:
        dataset_dir: the dataset folder (`manifest.parquet` + `shards/`).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        input_px: side the patches are resized to once at load (None keeps the dataset's).
        seed: seeds the shuffling and the augmentation (reproducible runs).
        augment: `hed_sigma`/`hed_bias` (stain jitter, `autoscope.models.stain`) plus keyword
            arguments of `autoscope.datasets.augment.augment_batch` (flips/rot90, colour jitter).
        mean: normalisation mean handed to the augmentation (its output is model-ready).
        std: normalisation std handed to the augmentation.
        num_classes: number of classes (for the class counts).
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        batch_size: int,
        eval_batch_size: int,
        input_px: int | None,
        seed: int,
        augment: Mapping[str, Any],
        mean: Sequence[float],
        std: Sequence[float],
        num_classes: int,
    ) -> None:
        super().__init__()
        self.dataset_dir = Path(dataset_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.input_px, self.seed = input_px, seed
        self.augment_kwargs = dict(augment)
        self.hed_sigma = float(self.augment_kwargs.pop("hed_sigma", 0.0))
        self.hed_bias = float(self.augment_kwargs.pop("hed_bias", 0.0))
        self.mean, self.std = list(mean), list(std)
        self.num_classes = num_classes
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._aug_gen: torch.Generator | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load every split once (later calls are no-ops)."""
        if self.splits:
            return
        for split in SPLITS:
            x, y = load_split(self.dataset_dir, split)
            xt = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))  # into RAM once
            if self.input_px:
                xt = resize_u8(xt, int(self.input_px))
            yt = torch.from_numpy(np.array(y, dtype=np.int64, copy=True))
            if len(yt) and (int(yt.min()) < 0 or int(yt.max()) >= self.num_classes):
                raise UserError(
                    f"{self.dataset_dir}: split '{split}' has labels outside "
                    f"0..{self.num_classes - 1} (project.classes and the dataset disagree)"
                )
            self.splits[split] = (xt, yt)
        if len(self.splits["train"][1]) == 0 or len(self.splits["val"][1]) == 0:
            raise UserError(f"{self.dataset_dir}: the train and val splits must not be empty")

    @property
    def patch_px(self) -> int:
        """Side of the patches the model sees."""
        return int(self.splits["train"][0].shape[1])

    def class_counts(self) -> list[int]:
        """Training patches per class."""
        y = self.splits["train"][1]
        return torch.bincount(y, minlength=self.num_classes).tolist()

    def _loader(self, split: str, train: bool) -> DataLoader:
        x, y = self.splits[split]
        if train:
            g = torch.Generator().manual_seed(self.seed)
            sampler = RandomSampler(range(len(y)), generator=g)
            drop = len(y) > self.batch_size
            batches = BatchSampler(sampler, self.batch_size, drop_last=drop)
        else:
            batches = BatchSampler(SequentialSampler(range(len(y))), self.eval_batch_size, False)
        return DataLoader(_Batches(x, y), sampler=batches, batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches (on the CPU, reproducibly); eval batches stay uint8."""
        if self.trainer is None or not self.trainer.training:
            return batch
        from autoscope.datasets.augment import augment_batch
        from autoscope.models.stain import hed_jitter

        if self._aug_gen is None:
            self._aug_gen = torch.Generator().manual_seed(self.seed + 1)
        x, y = batch
        x = hed_jitter(x, self._aug_gen, self.hed_sigma, self.hed_bias)
        x = augment_batch(x, self._aug_gen, mean=self.mean, std=self.std, **self.augment_kwargs)
        return x, y
