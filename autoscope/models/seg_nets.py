"""Segmentation nets: encoder-decoder (U-Net) builders called through `_target_` (no downloads).

Every builder takes `num_classes` and returns an `nn.Module` mapping float `[N, 3, H, W]` to
dense logits `[N, num_classes, H, W]` (same side as the input). The head is the last
registered `nn.Conv2d` (a 1x1 convolution), which `classifier.head_name` finds. Inputs whose side
is not a multiple of the net's total stride are padded (reflect) and the output cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from autoscope.models.archs import _Block


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class _Decoder(nn.Module):
    """U-Net decoder: upsample x2, concatenate the skip, one 3x3 conv per scale."""

    def __init__(self, enc_widths: Sequence[int], dec_widths: Sequence[int]) -> None:
        super().__init__()
        ups = []
        c = enc_widths[-1]
        for skip, w in zip(reversed(enc_widths[:-1]), dec_widths, strict=True):
            ups.append(_conv_bn(c + skip, w))
            c = w
        self.ups = nn.ModuleList(ups)
        self.out_width = c

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for conv, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = conv(torch.cat([x, skip], dim=1))
        return x


class _Dense(nn.Module):
    """Pads the input to the encoder's stride multiple, runs the net, upsamples and crops."""

    stride: int = 1

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        y = self.head(self.decoder(self._features(x)))
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w] if (ph or pw) else y


class SegUNet(_Dense):
    """A compact U-Net on the small ResNet's basic blocks: trains in minutes on a CPU.

    Args:
        num_classes: number of output classes.
        widths: channels of each encoder stage; every stage after the first halves the side.
        depths: basic blocks per encoder stage.
        stem_width: channels of the full-resolution 3x3 stem.
        dropout: channel dropout before the head.
    """

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (16, 32, 64, 128),
        depths: Sequence[int] = (1, 1, 1, 1),
        stem_width: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or len(widths) < 2:
            raise ValueError("widths and depths need the same length (at least 2 stages)")
        self.stem = _conv_bn(3, stem_width)
        stages, c = [], stem_width
        for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(d):
                blocks.append(_Block(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.stride = 2 ** (len(widths) - 1)
        self.decoder = _Decoder(list(widths), list(reversed(widths[:-1])))
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Sequential(self.drop, nn.Conv2d(self.decoder.out_width, num_classes, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class SegResNet(_Dense):
    """A torchvision ResNet encoder (random init, or `model.pretrained`) with a U-Net decoder.

    The larger choice for GPUs. Features at strides 2 (stem), 4, 8, 16 and 32; the decoder
    returns to stride 2 and the logits are upsampled to the input side.

    Args:
        num_classes: number of output classes.
        backbone: `resnet18`, `resnet34` or `resnet50`.
        decoder_widths: channels of the decoder from deep to shallow (4 entries).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet34",
        decoder_widths: Sequence[int] = (256, 128, 64, 32),
    ) -> None:
        super().__init__()
        import torchvision.models as tvm

        if backbone not in ("resnet18", "resnet34", "resnet50"):
            raise ValueError(f"backbone {backbone!r}: resnet18, resnet34 or resnet50")
        enc = getattr(tvm, backbone)(weights=None)
        self.stem = nn.Sequential(enc.conv1, enc.bn1, enc.relu)
        self.pool = enc.maxpool
        self.layers = nn.ModuleList([enc.layer1, enc.layer2, enc.layer3, enc.layer4])
        expansion = 4 if backbone == "resnet50" else 1
        widths = [64] + [w * expansion for w in (64, 128, 256, 512)]
        self.stride = 32
        self.decoder = _Decoder(widths, list(decoder_widths))
        self.head = nn.Conv2d(self.decoder.out_width, num_classes, 1)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        x = self.pool(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


def seg_unet(num_classes: int, **kwargs) -> SegUNet:
    """The CPU-sized default U-Net (about 0.5M parameters with the defaults)."""
    return SegUNet(num_classes=num_classes, **kwargs)


def seg_resnet(num_classes: int, **kwargs) -> SegResNet:
    """A ResNet-encoder U-Net (resnet34 by default): the GPU choice."""
    return SegResNet(num_classes=num_classes, **kwargs)
