"""Architectures: builders called through `_target_` in `conf/model/*.yaml` (no downloads).

Every builder takes `num_classes` (injected from the project's classes) and returns an
`nn.Module` mapping float `[N, 3, H, W]` to logits `[N, num_classes]`. `build_net` is the one
way a backbone is built from its `net` mapping, in training and from a model card alike.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from autoscope.errors import UserError

# `_target_` prefixes a model card may name: builders run when a card is loaded, so a card
# from elsewhere can only call architecture builders, never an arbitrary function.
BUILDER_PREFIXES = (
    "autoscope.models.archs.",
    "autoscope.models.seg_nets.",  # dense segmentation nets (U-Nets)
    "torchvision.models.",
)


def to_plain(value: Any) -> Any:
    """Nested mappings and sequences (e.g. a resolved config node) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [to_plain(v) for v in value]
    return value


def locate_builder(target: str) -> Callable[..., nn.Module]:
    """The architecture builder named by a dotted `_target_` path.

    Raises:
        UserError: the path is outside `BUILDER_PREFIXES` or names nothing callable.
    """
    if not target.startswith(BUILDER_PREFIXES):
        allowed = ", ".join(f"{p}*" for p in BUILDER_PREFIXES)
        raise UserError(f"model.net._target_ '{target}': not an architecture builder ({allowed})")
    module, _, name = target.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise UserError(f"model.net._target_ '{target}': no such builder") from None
    if not callable(fn):
        raise UserError(f"model.net._target_ '{target}': not callable")
    return fn


def build_net(net: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The backbone of a `net` mapping: its `_target_` called with the other keys + `num_classes`.

    Args:
        net: `{_target_: <builder path>, **builder arguments}` (`model.net`, or `arch.net` of a
            model card).
        num_classes: number of output classes.
    """
    args = to_plain(net)
    builder = locate_builder(str(args.pop("_target_", "")))
    return builder(num_classes=num_classes, **args)


class _Block(nn.Module):
    """A ResNet basic block (two 3x3 convs, batch norm, identity or 1x1 shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity: stable from scratch
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class SmallResNet(nn.Module):
    """A compact ResNet for small patches that trains fast on a CPU.

    Args:
        num_classes: number of output classes.
        widths: channels of each stage; every stage after the first halves the resolution.
        depths: basic blocks per stage.
        stem_width: channels of the 3x3 stem convolution.
        stem_stride: stride of the stem (2 halves a 96 px patch to 48 px at once).
        dropout: dropout before the linear head.
    """

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (1, 1, 1),
        stem_width: int = 24,
        stem_stride: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError("widths and depths need the same length")
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem_width, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        ]
        c = stem_width
        for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
            for j in range(d):
                layers.append(_Block(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def small_resnet(num_classes: int, **kwargs) -> SmallResNet:
    """The default small CNN (about 300k parameters with the defaults)."""
    return SmallResNet(num_classes=num_classes, **kwargs)


def resnet18(num_classes: int) -> nn.Module:
    """torchvision ResNet-18, randomly initialised (use `model.pretrained` for weights)."""
    from torchvision.models import resnet18 as build

    return build(weights=None, num_classes=num_classes)


def resnet50(num_classes: int) -> nn.Module:
    """torchvision ResNet-50, randomly initialised."""
    from torchvision.models import resnet50 as build

    return build(weights=None, num_classes=num_classes)


def efficientnet_b0(num_classes: int, dropout: float = 0.2) -> nn.Module:
    """torchvision EfficientNet-B0, randomly initialised."""
    from torchvision.models import efficientnet_b0 as build

    return build(weights=None, num_classes=num_classes, dropout=dropout)


def convnext_tiny(num_classes: int) -> nn.Module:
    """torchvision ConvNeXt-tiny, randomly initialised."""
    from torchvision.models import convnext_tiny as build

    return build(weights=None, num_classes=num_classes)


def vit_small(
    num_classes: int,
    image_px: int,
    patch_px: int = 16,
    depth: int = 12,
    dim: int = 384,
    heads: int = 6,
    mlp_ratio: int = 4,
) -> nn.Module:
    """ViT-S (patch 16, dim 384, depth 12, heads 6) from torchvision's VisionTransformer.

    Args:
        num_classes: number of output classes.
        image_px: input side in pixels (a multiple of `patch_px`).
        patch_px: side of a ViT token patch.
        depth: transformer layers.
        dim: token dimension.
        heads: attention heads.
        mlp_ratio: MLP width as a multiple of `dim`.
    """
    from torchvision.models.vision_transformer import VisionTransformer

    if image_px % patch_px:
        raise ValueError(f"ViT input {image_px} px is not a multiple of its patch {patch_px} px")
    return VisionTransformer(
        image_size=image_px,
        patch_size=patch_px,
        num_layers=depth,
        num_heads=heads,
        hidden_dim=dim,
        mlp_dim=dim * mlp_ratio,
        num_classes=num_classes,
    )
