"""Patch data for training: whole splits decoded once into memory, augmented per batch.

The shards are read once (uint8, resized once to the model's `input_px` when it differs); every
epoch only indexes the in-memory arrays. The augmentation runs in two stages
(`autoscope.datasets.augment`): the training loader gathers each batch with its random
flip/rot90 views in the same uint8 copy (`gather_dihedral`), and `PatchDataModule.photometric`
(stain + colour jitter + normalisation, one batched float op) runs on the model's device, called
from the start of `PatchClassifierModule.training_step`.
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
FIT_ON = ("train", "train+val")


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


class _DihedralBatches(Dataset):
    """Training batches: indices -> uint8 batch gathered with one random flip/rot90 per patch.

    Each batch gets its own buffer (a reused one would be overwritten under a consumer that
    holds batches, e.g. Lightning's one-batch prefetch; the allocator hands the same memory back,
    so a fresh buffer measured no slower).

    Args:
        x: uint8 `[N,H,W,3]` patches (contiguous, in memory).
        y: int64 `[N]` labels.
        generator: draws the view codes (reproducible).
        geometric: False delivers plain gathers.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, geometric: bool
    ) -> None:
        self.x, self.y, self.generator = x.numpy(), y, generator
        self.geometric = geometric and x.shape[1] == x.shape[2]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from autoscope.datasets.augment import dihedral_codes, gather_dihedral

        i = np.asarray(idx, dtype=np.int64)
        codes = dihedral_codes(len(i), self.generator).numpy() if self.geometric else None
        x = gather_dihedral(self.x, i, codes)
        return torch.from_numpy(x), self.y.index_select(0, torch.from_numpy(i))


class PatchDataModule(L.LightningDataModule):
    """Train/val/test splits of one patch dataset, held in memory as uint8 tensors.

    Args:
        dataset_dir: the dataset folder (`manifest.parquet` + `shards/`).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        input_px: side the patches are resized to once at load (None keeps the dataset's).
        seed: seeds the shuffling and the augmentation (reproducible runs).
        augment: `geometric` (a random flip/rot90 view per patch), `views_on` (`loader`: fused
            into the training loader's gather, the default; `device`: drawn and applied with the
            photometric stage, which keeps the loader a bare gather for a GPU's sake) plus
            keyword arguments of `autoscope.datasets.augment.photometric` (`hed_sigma`,
            `hed_bias`, `jitter`).
        mean: normalisation mean handed to the augmentation (its output is model-ready).
        std: normalisation std handed to the augmentation.
        num_classes: number of classes (for the class counts).
        fit_on: the splits the model is fitted on: `train`, or `train+val` for a final refit
            once the configuration is fixed (validation then measures the fit, not held-out
            data: the train stage keeps the last weights and does not stop early).
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
        fit_on: str = "train",
    ) -> None:
        super().__init__()
        if fit_on not in FIT_ON:
            raise UserError(f"trainer.fit_on: '{fit_on}' is not one of {', '.join(FIT_ON)}")
        self.fit_on = fit_on
        self.dataset_dir = Path(dataset_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.input_px, self.seed = input_px, seed
        self.augment_kwargs = dict(augment)
        self.geometric = bool(self.augment_kwargs.pop("geometric", True))
        self.views_on = str(self.augment_kwargs.pop("views_on", "loader"))
        if self.views_on not in ("loader", "device"):
            raise UserError(f"trainer.augment.views_on: '{self.views_on}' is not loader|device")
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
        self._fit = self.splits["train"]
        if self.fit_on == "train+val":
            (xa, ya), (xb, yb) = self.splits["train"], self.splits["val"]
            self._fit = (torch.cat([xa, xb]), torch.cat([ya, yb]))

    @property
    def patch_px(self) -> int:
        """Side of the patches the model sees."""
        return int(self.splits["train"][0].shape[1])

    def class_counts(self) -> list[int]:
        """Training patches per class (of the splits fitted on)."""
        y = self._fit[1]
        return torch.bincount(y, minlength=self.num_classes).tolist()

    def _loader(self, split: str, train: bool) -> DataLoader:
        x, y = self._fit if train else self.splits[split]
        data: Dataset = _Batches(x, y)
        if train:
            g = torch.Generator().manual_seed(self.seed)
            sampler = RandomSampler(range(len(y)), generator=g)
            drop = len(y) > self.batch_size
            batches = BatchSampler(sampler, self.batch_size, drop_last=drop)
            views = torch.Generator().manual_seed(self.seed + 2)
            data = _DihedralBatches(x, y, views, self.geometric and self.views_on == "loader")
        else:
            batches = BatchSampler(SequentialSampler(range(len(y))), self.eval_batch_size, False)
        return DataLoader(data, sampler=batches, batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def photometric(self, x: torch.Tensor) -> torch.Tensor:
        """Stain/colour jitter and normalisation of a uint8 training batch on its device.

        With `views_on: device` the flip/rot90 views are drawn and applied here first.

        Returns the model-ready float `[B,3,H,W]` (`autoscope.datasets.augment.photometric`).
        """
        from autoscope.datasets.augment import dihedral, dihedral_codes, photometric

        if self._aug_gen is None:
            self._aug_gen = torch.Generator().manual_seed(self.seed + 1)
        if self.geometric and self.views_on == "device" and x.shape[1] == x.shape[2]:
            x = dihedral(x, dihedral_codes(len(x), self._aug_gen))
        return photometric(x, self._aug_gen, mean=self.mean, std=self.std, **self.augment_kwargs)
