"""Training input pipeline: uint8 batches with views from the loader, photometric on the device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tinydata import make_tiny_dataset

from autoscope.errors import UserError
from autoscope.models import archs
from autoscope.models.classifier import PatchClassifier
from autoscope.models.data import PatchDataModule
from autoscope.models.module import PatchClassifierModule

AUG = {"hed_sigma": 0.05, "hed_bias": 0.02, "geometric": True, "jitter": 0.1}


def _dm(folder: Path, **aug: object) -> PatchDataModule:
    dm = PatchDataModule(
        folder,
        16,
        64,
        None,
        seed=3,
        augment={**AUG, **aug},
        mean=[0.5] * 3,
        std=[0.2] * 3,
        num_classes=2,
    )
    dm.setup()
    return dm


def _views(p: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(q, k, (0, 1)) for q in (p, p.flip(1)) for k in range(4)]


def test_loader_delivers_uint8_views_and_photometric_floats(tmp_path: Path) -> None:
    dm = _dm(make_tiny_dataset(tmp_path / "ds"))
    x_all, y_all = dm.splits["train"]
    batches = list(dm.train_dataloader())  # all held at once: each has its own buffer
    for x, y in batches:
        assert x.dtype == torch.uint8 and x.shape == (16, 32, 32, 3) and y.dtype == torch.int64
        for xi, yi in zip(x, y, strict=True):  # each patch is a view of a stored patch
            hits = [
                j for j in range(len(x_all)) if any(torch.equal(xi, v) for v in _views(x_all[j]))
            ]
            assert hits and int(y_all[hits[0]]) == int(yi)
    assert len({b[0].data_ptr() for b in batches}) == len(batches) == 6
    f = dm.photometric(batches[0][0])
    assert f.dtype == torch.float32 and f.shape == (16, 3, 32, 32)
    again = _dm(tmp_path / "ds")
    x2, _ = next(iter(again.train_dataloader()))
    assert torch.equal(x2, batches[0][0]) and torch.equal(again.photometric(x2), f)


def test_views_on_device_keeps_the_loader_a_plain_gather(tmp_path: Path) -> None:
    dm = _dm(make_tiny_dataset(tmp_path / "ds"), views_on="device")
    x, _ = next(iter(dm.train_dataloader()))
    g = torch.Generator().manual_seed(3)
    order = list(torch.utils.data.RandomSampler(range(96), generator=g))[:16]
    assert torch.equal(x, dm.splits["train"][0][order])
    assert dm.photometric(x).shape == (16, 3, 32, 32)
    with pytest.raises(UserError, match="views_on"):
        _dm(tmp_path / "ds", views_on="gpu")


def test_module_augments_uint8_training_batches_only() -> None:
    net = archs.small_resnet(2, widths=[8, 16], depths=[1, 1], stem_width=8)
    seen: list[torch.Tensor] = []

    def aug(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x.permute(0, 3, 1, 2).float()

    module = PatchClassifierModule(
        PatchClassifier(net), torch.nn.CrossEntropyLoss(), torch.optim.SGD, None, 2, augment=aug
    )
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    assert module.augment_batch(x).dtype == torch.float32 and seen[0] is x
    f = torch.zeros(4, 3, 32, 32)
    assert module.augment_batch(f) is f and len(seen) == 1
    plain = PatchClassifierModule(
        PatchClassifier(net), torch.nn.CrossEntropyLoss(), torch.optim.SGD, None, 2
    )
    assert plain.augment_batch(x) is x  # no datamodule, no augmentation: the model normalises
