"""The training augmentation: dihedral flips/rotations and colour jitter on uint8 patch batches.

One function shared by training and `benchmarks/loader.py`, so the benchmark measures what
training runs. On the CPU the flip/rot90 is folded into the uint8 -> float conversion (numpy
views with negative strides: one pass); the colour jitter (brightness, contrast, saturation,
per-channel gain) and the optional normalisation are folded into one 3x3 affine map per sample,
applied with a single batched matrix product, then one clamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

GRAY = (0.299, 0.587, 0.114)  # luma weights used for the saturation jitter


def _dihedral_u8(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 flips/rot90s per sample to a uint8 [B,H,W,3] batch (square patches)."""
    import torch

    out = torch.empty_like(x)
    for code in torch.unique(codes).tolist():
        idx = (codes == code).nonzero().squeeze(1)
        part = x.index_select(0, idx)
        k, flip = code % 4, code >= 4
        if k:
            part = torch.rot90(part, k, dims=(1, 2))
        if flip:
            part = torch.flip(part, dims=(2,))
        out.index_copy_(0, idx, part.contiguous())
    return out


def _planar_float(x: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float32 [B,3,H,W] (0..255), each sample turned by its dihedral code."""
    import numpy as np
    import torch

    b, h, w, _ = x.shape
    out = torch.empty(b, 3, h, w, dtype=torch.float32, device=x.device)
    if x.device.type != "cpu":
        src = x if codes is None else _dihedral_u8(x, codes)
        return out.copy_(src.permute(0, 3, 1, 2))
    xn, on = x.numpy(), out.numpy()
    if codes is None:
        on[...] = xn.transpose(0, 3, 1, 2)
        return out
    cn = codes.numpy()
    for code in range(8):
        sel = np.nonzero(cn == code)[0]
        if len(sel):
            view = np.rot90(xn[sel], code % 4, axes=(1, 2))
            on[sel] = (view[:, :, ::-1] if code >= 4 else view).transpose(0, 3, 1, 2)
    return out


def _colour_affine(
    batch: int, jitter: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-sample colour maps `y = A x + o` for x in [0, 1]; A [B,3,3], o [B,3]."""
    import torch

    def u(*shape: int) -> torch.Tensor:
        return 1.0 + jitter * (2.0 * torch.rand(*shape, generator=generator) - 1.0)

    bright, contrast, sat = u(batch, 1, 1), u(batch, 1, 1), u(batch, 1, 1)
    gain = u(batch, 3, 1) if jitter else torch.ones(batch, 3, 1)
    gray = torch.tensor(GRAY).view(1, 1, 3).expand(batch, 3, 3)
    eye = torch.eye(3).expand(batch, 3, 3)
    m_sat = sat * eye + (1.0 - sat) * gray
    a = bright * contrast * gain * m_sat
    o = (bright * (1.0 - contrast) * 0.5 * gain).squeeze(2)
    return a, o


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    geometric: bool = True,
    jitter: float = 0.1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Augment a uint8 batch and return floats ready for a model.

    Args:
        x: uint8 tensor [B, H, W, 3] with H == W (patches from the shards).
        generator: torch.Generator that makes the augmentation reproducible.
        geometric: apply a random one of the 8 flips/rot90s per sample.
        jitter: strength of brightness, contrast, saturation and per-channel gain jitter
            (each factor drawn from [1 - jitter, 1 + jitter]); 0 disables colour jitter.
        mean: per-channel mean to subtract after scaling to [0, 1] (None: no normalisation).
        std: per-channel std to divide by (with `mean`).

    Runs on the batch's device: move the uint8 batch to the GPU first and the augmentation runs
    there (the random draws stay on the generator's CPU, so results do not depend on the device).

    Returns:
        contiguous float32 tensor [B, 3, H, W] in [0, 1], or normalised with
        mean/std when given.
    """
    import torch

    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"augment_batch wants uint8 [B,H,W,3], got {x.dtype} {tuple(x.shape)}")
    b, h, w, _ = x.shape
    codes = torch.randint(0, 8, (b,), generator=generator) if geometric and h == w else None
    planar = _planar_float(x, None if codes is None else codes.to(x.device))
    a, o = _colour_affine(b, jitter, generator)
    lo, hi = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if mean is not None and std is not None:
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        a, o = a / s.view(1, 3, 1), (o - m) / s
        lo = [(0.0 - mi) / si for mi, si in zip(mean, std, strict=True)]
        hi = [(1.0 - mi) / si for mi, si in zip(mean, std, strict=True)]
    a, o = (a / 255.0).to(x.device), o.to(x.device)
    out = torch.baddbmm(o.unsqueeze(2), a, planar.view(b, 3, h * w)).view(b, 3, h, w)
    for c in range(3):
        out[:, c].clamp_(lo[c], hi[c])
    return out
