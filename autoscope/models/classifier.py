"""PatchClassifier: a backbone plus its input spec; normalises inside, so callers pass pixels."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoscope.errors import UserError
from autoscope.models.archs import build_net, to_plain
from autoscope.project import ClassSpec

FINETUNE = ("full", "linear_probe")  # the values of `model.finetune`


def head_name(net: nn.Module) -> str:
    """The net's head: the name of its last `nn.Linear` (`fc`, `head.2`, ...).

    A dense net (segmentation, detection heatmaps) has no linear layer: its head is its last
    `nn.Conv2d` (the 1x1 classifier convolution, registered last).

    Raises:
        UserError: the net has neither a linear nor a convolution layer to call its head.
    """
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    names = names or [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise UserError(f"{type(net).__name__}: no linear layer to serve as the head")
    return names[-1]


def in_module(key: str, module: str) -> bool:
    """True when the parameter or buffer `key` belongs to the submodule named `module`."""
    return key == module or key.startswith(module + ".")


class PatchClassifier(nn.Module):
    """Classify patches: uint8 `[N,H,W,3]` (or float `[N,3,H,W]`) in, logits `[N,C]` out.

    A dense `net` (segmentation) returns logits `[N,C,H,W]` instead; everything else is shared.

    Args:
        net: backbone mapping normalised float `[N,3,H,W]` to logits.
        mean: per-channel mean of pixels scaled to [0, 1].
        std: per-channel standard deviation of pixels scaled to [0, 1].
        channels_last: run the backbone in channels-last memory format (faster convolutions).
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.net = net
        self.channels_last = channels_last
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.finetune, self.backbone_lr_mult = "full", 1.0  # see set_finetune
        self.head_key: str | None = None  # the head's module name, once set_finetune found it

    def set_finetune(self, finetune: str = "full", backbone_lr_mult: float = 1.0) -> None:
        """How training treats the backbone (every weight of the net but the head's).

        Args:
            finetune: `full` trains every weight; `linear_probe` freezes the backbone (no
                gradients; batch norm and dropout in eval mode, see `train`), trains the head.
            backbone_lr_mult: with `full`, the backbone learns at the optimiser's lr x this.

        Raises:
            UserError: an unknown `finetune` or a multiplier that is not positive.
        """
        if finetune not in FINETUNE:
            raise UserError(f"model.finetune: '{finetune}' is not one of {', '.join(FINETUNE)}")
        if not float(backbone_lr_mult) > 0:
            raise UserError(f"model.backbone_lr_mult: must be > 0, got {backbone_lr_mult}")
        self.finetune, self.backbone_lr_mult = finetune, float(backbone_lr_mult)
        self.head_key = head = head_name(self.net)
        for name, p in self.net.named_parameters():
            p.requires_grad_(finetune == "full" or in_module(name, head))

    def train(self, mode: bool = True) -> PatchClassifier:
        """`nn.Module.train`, except that a frozen backbone (`linear_probe`) stays in eval mode.

        Its batch-norm statistics stay those of the pretrained weights and its dropout is off.
        """
        super().train(mode)
        if mode and self.finetune == "linear_probe" and self.head_key is not None:
            self.net.eval()
            self.net.get_submodule(self.head_key).train()
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters as optimiser groups `{params, lr_mult}` (lr x `lr_mult`).

        One group, unless `full` with a `backbone_lr_mult` other than 1: then the backbone's
        group and the head's.
        """
        trainable = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        if self.finetune != "full" or self.backbone_lr_mult == 1.0:
            return [{"params": [p for _, p in trainable], "lr_mult": 1.0}]
        head = f"net.{self.head_key}"
        return [
            {
                "params": [p for n, p in trainable if not in_module(n, head)],
                "lr_mult": self.backbone_lr_mult,
            },
            {"params": [p for n, p in trainable if in_module(n, head)], "lr_mult": 1.0},
        ]

    def prepare(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Turn uint8 `[N,H,W,3]` or float `[N,3,H,W]` in [0, 1] into the backbone's input."""
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            normalize = True
        if normalize:
            x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Logits for a batch.

        Args:
            x: uint8 `[N,H,W,3]` pixels, or float `[N,3,H,W]` in [0, 1] (`normalize=True`) or
                already normalised (`normalize=False`).
            normalize: whether float input still needs the mean/std normalisation.
        """
        return self.net(self.prepare(x, normalize))

    @torch.no_grad()
    def predict_tta(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Softmax probabilities averaged over the 8 flip/rot90 views (dihedral test-time aug).

        Dense outputs `[N,C,H,W]` (segmentation, heatmaps) are turned back into the input's
        frame before averaging (the flip undone, then the quarter turns).
        """
        x = self.prepare(x, normalize)
        probs = torch.zeros(())
        for k in range(4):
            r = torch.rot90(x, k, dims=(2, 3))
            for flip in (False, True):
                p = torch.softmax(self.net(torch.flip(r, dims=(3,)) if flip else r).float(), dim=1)
                if p.ndim == 4:
                    p = torch.rot90(torch.flip(p, dims=(3,)) if flip else p, -k, dims=(2, 3))
                probs = probs + p
        return probs / 8.0

    @classmethod
    def build(cls, arch: Mapping[str, Any], num_classes: int) -> PatchClassifier:
        """Build from an arch mapping (`conf/model/*.yaml`, or a card's `arch`) without weights.

        Args:
            arch: `net` (`_target_` + builder arguments, see `archs.build_net`), `mean`, `std`
                and `channels_last`; other keys are ignored.
            num_classes: number of output classes.
        """
        net = build_net(arch["net"], num_classes)
        return cls(
            net,
            mean=list(arch["mean"]),
            std=list(arch["std"]),
            channels_last=bool(arch.get("channels_last", True)),
        )

    @classmethod
    def from_files(
        cls, spec_json: str | Path, weights_pt: str | Path, map_location: str = "cpu"
    ) -> PatchClassifier:
        """Rebuild a trained classifier from its `spec.json` and `model.pt` state dict.

        Raises:
            UserError: a file is missing or the weights do not fit the spec.
        """
        spec_path, weights_path = Path(spec_json), Path(weights_pt)
        for p in (spec_path, weights_path):
            if not p.is_file():
                raise UserError(f"model file not found: {p}")
        spec = json.loads(spec_path.read_text())
        arch = dict(spec["arch"])
        arch["mean"], arch["std"] = spec["input"]["mean"], spec["input"]["std"]
        model = cls.build(arch, int(spec["num_classes"]))
        state = torch.load(weights_path, map_location=map_location, weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise UserError(f"{weights_path}: weights do not fit {spec_path} ({first})") from None
        return model.eval()


def make_spec(
    arch: Mapping[str, Any],
    classes: Sequence[Mapping[str, str] | ClassSpec],
    mpp: float | None,
    patch_px: int,
) -> dict:
    """The `spec.json` of the contract: arch, classes, input {mpp, patch_px, mean, std}.

    Args:
        arch: the resolved model config (`model.*`; `pretrained` is left out of the spec).
        classes: the project's classes, as `ClassSpec`s or `{name, color}` mappings.
        mpp: micrometres per pixel of the model's input (None: unknown).
        patch_px: side of the patches the model sees.
    """
    arch = {k: v for k, v in to_plain(arch).items() if k != "pretrained"}
    rows = [asdict(c) if isinstance(c, ClassSpec) else to_plain(c) for c in classes]
    return {
        "arch": arch,
        "classes": rows,
        "input": {
            "mpp": mpp,
            "patch_px": int(patch_px),
            "mean": list(arch["mean"]),
            "std": list(arch["std"]),
        },
        "num_classes": len(rows),
    }
