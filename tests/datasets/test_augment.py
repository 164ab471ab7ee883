"""The two augmentation stages: the loader's dihedral gather and the photometric batch op."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autoscope.datasets import augment, stain


def _batch(n: int = 24, px: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, px, px, 3), dtype=torch.uint8, generator=g)


def test_gather_dihedral_writes_each_view_into_the_buffer(tmp_path: Path) -> None:
    """Every code gives the torch reference view; works on a memory-mapped shard."""
    x = _batch(40)
    np.save(tmp_path / "shard.npy", x.numpy())
    shard = np.load(tmp_path / "shard.npy", mmap_mode="r")
    idx = np.array([39, 3, 3, 17, 0, 25, 8, 12, 30, 1, 2, 5, 6, 7, 9, 10])
    codes = np.arange(16) % 8
    out = np.empty((16, 16, 16, 3), np.uint8)
    got = augment.gather_dihedral(shard, idx, codes, out)
    assert got is out
    want = augment._dihedral_u8(x[torch.from_numpy(idx)], torch.from_numpy(codes))
    assert torch.equal(torch.from_numpy(got), want)
    for i, code in enumerate(codes):  # the codes mean: code % 4 quarter turns, then a W flip
        ref = torch.rot90(x[idx[i]], int(code) % 4, (0, 1))
        assert torch.equal(want[i], ref.flip(1) if code >= 4 else ref)
    plain = augment.gather_dihedral(shard, idx, None)
    assert np.array_equal(plain, x.numpy()[idx])


def test_photometric_identity_normalisation_and_layout() -> None:
    x = _batch()
    g = torch.Generator().manual_seed(0)
    plain = augment.photometric(x, g, jitter=0.0)
    assert plain.shape == (24, 3, 16, 16) and plain.dtype == torch.float32
    assert plain.is_contiguous(memory_format=torch.channels_last)  # what the classifier runs on
    assert torch.allclose(plain, x.permute(0, 3, 1, 2).float() / 255, atol=1e-6)
    mean, std = [0.5, 0.4, 0.6], [0.25, 0.2, 0.1]
    norm = augment.photometric(x, g, jitter=0.0, mean=mean, std=std)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(norm, (plain - m) / s, atol=1e-5)
    jit = augment.photometric(x, g, jitter=0.3, mean=mean, std=std)
    assert (jit * s + m).min() >= -1e-5 and (jit * s + m).max() <= 1 + 1e-5
    with pytest.raises(ValueError):
        augment.photometric(x.float(), g)


def test_photometric_stain_jitter_matches_hed_jitter() -> None:
    """The fused float HED jitter equals the uint8 reference up to its rounding."""
    x = _batch(8, 32)
    ref = stain.hed_jitter(x, torch.Generator().manual_seed(5), 0.3, 0.05)
    got = augment.photometric(
        x, torch.Generator().manual_seed(5), hed_sigma=0.3, hed_bias=0.05, jitter=0.0
    )
    assert (got - ref.permute(0, 3, 1, 2).float() / 255).abs().max() < 0.6 / 255 + 1e-6


def test_same_seed_same_augmentation_and_composition() -> None:
    x = _batch()
    kw = {"hed_sigma": 0.05, "hed_bias": 0.02, "jitter": 0.1, "mean": [0.5] * 3, "std": [0.2] * 3}
    a = augment.augment_batch(x, torch.Generator().manual_seed(1), **kw)
    b = augment.augment_batch(x, torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a, b) and a.is_contiguous()
    g = torch.Generator().manual_seed(1)
    turned = augment.dihedral(x, augment.dihedral_codes(len(x), g))
    assert torch.equal(a, augment.photometric(turned, g, **kw).contiguous())
    c = augment.augment_batch(x, torch.Generator().manual_seed(2), **kw)
    assert not torch.equal(a, c)
