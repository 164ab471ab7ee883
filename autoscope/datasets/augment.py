"""The training augmentation, in two stages: a geometric gather and a photometric batch op.

1. **Loader (CPU, uint8).** `gather_dihedral` copies a batch of patches out of the in-memory or
   memory-mapped shard into a uint8 `[B,H,W,3]` buffer, each patch written as one of its 8
   flip/rot90 views in the same copy (no float conversion, no extra pass).
2. **Photometric (the model's device).** `photometric` takes the uint8 batch where it lies (CPU or
   GPU) and in one batched float pass applies HED stain jitter, brightness/contrast/saturation/
   per-channel gain jitter and the mean/std normalisation: each a 3x3 affine map per sample (the
   stain part in optical density, between one log and one exp), then one clamp.

`augment_batch` is the two composed, for callers that hold a whole uint8 batch. All random draws
come from CPU generators, so a seed gives the same result on any device.

Cost on a CPU (`benchmarks/loader.py`, 128 px): the views that keep whole rows copy at 0.5-0.7x
a bare gather, but reordering 3-byte pixels cannot run at memory speed in numpy/torch (the
transposing views at about 0.13x), so the fused gather delivers about 0.17-0.19x a bare gather.
`PatchDataModule`'s `views_on: device` keeps the loader a bare gather and turns the batch on the
model's device instead (nearly free on a GPU; the same cost as in the loader on a CPU).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

GRAY = (0.299, 0.587, 0.114)  # luma weights used for the saturation jitter
_LOG255 = float(np.log(255.0))


def dihedral_codes(batch: int, generator: torch.Generator) -> torch.Tensor:
    """One random view code per sample: `code % 4` quarter turns, then a W flip if `code >= 4`."""
    import torch

    return torch.randint(0, 8, (batch,), generator=generator)


def _view(patch: np.ndarray, code: int) -> np.ndarray:
    """The numpy view (no copy) of one `[H,W,C]` patch turned by `code`, like `_dihedral_u8`."""
    v = np.rot90(patch, code % 4, axes=(0, 1))
    return v[:, ::-1] if code >= 4 else v


def gather_dihedral(
    src: np.ndarray,
    idx: np.ndarray,
    codes: np.ndarray | None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Gather `src[idx]` into `out`, writing patch `i` as its view `codes[i]` in the same copy.

    Args:
        src: uint8 `[N,H,W,3]` patches (an array or a memory-mapped shard), H == W when turned.
        idx: int indices of the batch into `src`.
        codes: view code per sample (see `dihedral_codes`), or None for a plain gather.
        out: uint8 `[len(idx),H,W,3]` buffer to fill (allocated when None).

    Each patch is one strided copy. Views that keep the row order (identity, vertical flip) copy
    whole rows; the others reorder 3-byte pixels, copied as single `V3` items (about 3x faster
    than byte-wise strides), with the two flips that keep the axes done by `torch.flip`.

    Returns:
        `out`.
    """
    import torch

    src = np.asarray(src)  # a plain ndarray view of a np.memmap: no subclass overhead per item
    if out is None:
        out = np.empty((len(idx), *src.shape[1:]), dtype=src.dtype)
    if codes is None:
        np.take(src, idx, axis=0, out=out, mode="clip")  # "raise" buffers `out`
        return out
    px = src.reshape(*src.shape[:3], -1).view(f"V{src.shape[3] * src.itemsize}")[..., 0]
    px_out = out.reshape(*out.shape[:3], -1).view(px.dtype)[..., 0]
    with warnings.catch_warnings():  # a read-only shard: torch only reads it here
        warnings.simplefilter("ignore", UserWarning)
        t_src, t_out = torch.from_numpy(src), torch.from_numpy(out)
    for i, (j, code) in enumerate(
        zip(np.asarray(idx).tolist(), np.asarray(codes).tolist(), strict=True)
    ):
        if code in (0, 6):  # identity / vertical flip (rot180 + W flip): whole rows
            out[i] = _view(src[j], code)
        elif code in (2, 4):  # rot180 / W flip: torch's flip kernel beats strided items here
            t_out[i] = torch.flip(t_src[j], (0, 1) if code == 2 else (1,))
        else:  # the transposing views
            px_out[i] = _view(px[j], code)
    return out


def _dihedral_u8(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 flips/rot90s per sample to a uint8 [B,H,W,3] batch on any device."""
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


def dihedral(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """A uint8 `[B,H,W,3]` batch, each sample turned by its code: `gather_dihedral` on the CPU."""
    import torch

    if x.device.type != "cpu":
        return _dihedral_u8(x, codes.to(x.device))
    out = gather_dihedral(x.numpy(), np.arange(len(x)), codes.numpy())
    return torch.from_numpy(out)


def _planar_float(x: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float32 [B,3,H,W] (0..255), each sample turned by its dihedral code."""
    src = x if codes is None else dihedral(x, codes)
    return src.permute(0, 3, 1, 2).float().contiguous()


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


def photometric(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    hed_sigma: float = 0.0,
    hed_bias: float = 0.0,
    jitter: float = 0.1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Stain and colour jitter plus normalisation of a uint8 batch, on the batch's device.

    Args:
        x: uint8 `[B,H,W,3]` (CPU or GPU).
        generator: CPU generator of the per-sample factors (device-independent results).
        hed_sigma: HED stain amounts scaled by U(1 +- hed_sigma) (`autoscope.datasets.stain`).
        hed_bias: HED stain amounts shifted by U(+-hed_bias) OD units.
        jitter: brightness, contrast, saturation and per-channel gain factors from
            U(1 +- jitter); 0 disables the colour jitter.
        mean: per-channel mean to subtract after scaling to [0, 1] (None: no normalisation).
        std: per-channel std to divide by (with `mean`).

    Returns:
        float32 `[B,3,H,W]` in channels-last memory (what the classifier runs on), in [0, 1] or
        normalised with mean/std.
    """
    import torch

    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"photometric wants uint8 [B,H,W,3], got {x.dtype} {tuple(x.shape)}")
    b, h, w, _ = x.shape
    hed = hed_sigma > 0 or hed_bias > 0
    if hed:
        from autoscope.datasets.stain import hed_affine

        m, c = hed_affine(b, generator, hed_sigma, hed_bias)
        c = c + _LOG255 * m.sum(1)  # od = log 255 - log x: the constant folds into the shift
    a, o = _colour_affine(b, jitter, generator)
    lo, hi = torch.zeros(3), torch.ones(3)
    if mean is not None and std is not None:
        mu, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        a, o, lo, hi = a / s.view(1, 3, 1), (o - mu) / s, (lo - mu) / s, (hi - mu) / s
    dev = x.device
    rows = x.reshape(b, h * w, 3).float()
    if hed:  # rgb' = exp(-(od @ m + c)) with od = -log(x / 255), x >= 1 keeps od finite
        rows = torch.matmul(rows.clamp_(min=1.0).log_(), m.to(dev)).sub_(c.to(dev).unsqueeze(1))
        rows = rows.exp_().clamp_(max=1.0)
    else:
        a = a / 255.0
    out = torch.matmul(rows, a.to(dev).transpose(1, 2)).add_(o.to(dev).unsqueeze(1))
    out = torch.clamp_(out, min=lo.to(dev), max=hi.to(dev))  # (matmul + add: baddbmm is 5x slower)
    return out.view(b, h, w, 3).permute(0, 3, 1, 2)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    geometric: bool = True,
    jitter: float = 0.1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    hed_sigma: float = 0.0,
    hed_bias: float = 0.0,
) -> torch.Tensor:
    """The whole training augmentation of a uint8 batch: `dihedral` then `photometric`.

    Args:
        x: uint8 tensor [B, H, W, 3] (patches from the shards), on any device.
        generator: torch.Generator that makes the augmentation reproducible.
        geometric: apply a random one of the 8 flips/rot90s per sample (square patches).
        jitter: colour jitter strength (see `photometric`); 0 disables it.
        mean: per-channel mean to subtract after scaling to [0, 1] (None: no normalisation).
        std: per-channel std to divide by (with `mean`).
        hed_sigma: HED stain jitter, relative (0: off).
        hed_bias: HED stain jitter, absolute in OD units (0: off).

    Returns:
        contiguous float32 tensor [B, 3, H, W] in [0, 1], or normalised with mean/std.
    """
    import torch

    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"augment_batch wants uint8 [B,H,W,3], got {x.dtype} {tuple(x.shape)}")
    if geometric and x.shape[1] == x.shape[2]:
        x = dihedral(x, dihedral_codes(len(x), generator))
    out = photometric(
        x, generator, hed_sigma=hed_sigma, hed_bias=hed_bias, jitter=jitter, mean=mean, std=std
    )
    return out.contiguous()
