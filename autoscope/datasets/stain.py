"""HED stain jitter (Tellez et al., 2018): perturb haematoxylin, eosin and DAB amounts per patch.

In optical density (OD) space both colour deconvolution and its inverse are linear, so the whole
jitter is one 3x3 affine map per sample: `OD' = OD @ (H⁻¹ diag(a) H) + b H` with `a ~ U(1±sigma)`
and `b ~ U(±bias)`, applied with a single batched matrix product between one log and one exp.
Part of the training augmentation (`autoscope.datasets.augment`); the models package imports it
from here (datasets never import models).
"""

from __future__ import annotations

import torch

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB), as in scikit-image.
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
_MIN = 1.0 / 255.0  # darkest intensity kept finite in OD space


def hed_affine(
    batch: int, generator: torch.Generator, sigma: float, bias: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-sample OD maps `OD' = OD @ m + c`: m `[B,3,3]`, c `[B,3]` (row vectors)."""
    alpha = 1.0 + sigma * (2.0 * torch.rand(batch, 3, generator=generator) - 1.0)
    beta = bias * (2.0 * torch.rand(batch, 3, generator=generator) - 1.0)
    m = HED_FROM_RGB @ torch.diag_embed(alpha) @ RGB_FROM_HED  # [B,3,3]
    c = (beta.unsqueeze(1) @ RGB_FROM_HED).squeeze(1)  # [B,3]
    return m, c


def hed_jitter(
    x: torch.Tensor, generator: torch.Generator, sigma: float = 0.05, bias: float = 0.02
) -> torch.Tensor:
    """Jitter the stains of a uint8 `[B,H,W,3]` batch; returns uint8 of the same shape.

    Training fuses the same map into `autoscope.datasets.augment.photometric` (float output,
    no rounding in between); this uint8 form is for looking at the jitter.

    Args:
        x: uint8 RGB patches.
        generator: seeds the per-patch factors (reproducible).
        sigma: relative change of each stain's amount (a factor in [1 - sigma, 1 + sigma]).
        bias: absolute shift of each stain's amount (in OD units, in [-bias, bias]).
    """
    if sigma <= 0 and bias <= 0:
        return x
    b, h, w, _ = x.shape
    m, c = hed_affine(b, generator, sigma, bias)
    od = -torch.log(x.reshape(b, h * w, 3).float().div_(255.0).clamp_(min=_MIN))
    od = torch.baddbmm(c.unsqueeze(1), od, m)
    out = torch.exp_(od.neg_()).mul_(255.0).round_().clamp_(0, 255)
    return out.to(torch.uint8).view(b, h, w, 3)
