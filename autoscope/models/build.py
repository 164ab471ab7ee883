"""Builders of the training objects from plain values (no training logic, no config here).

The train stage instantiates the `_target_`s of the config (loss, optimiser and scheduler
partials, the data module, callbacks, the logger, the `make_trainer` partial) and hands the
objects to these builders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscope.errors import UserError

if TYPE_CHECKING:
    import lightning as L
    from torch import nn

    from autoscope.models.classifier import PatchClassifier
    from autoscope.models.module import PatchClassifierModule
    from autoscope.project import Stores


def dataset_dir(stores: Stores, name: str | None) -> Path:
    """The built dataset `name` of the project (`autoscope.datasets.store.dataset_dir`).

    Raises:
        UserError: no dataset chosen, or its folder has no `manifest.parquet`.
    """
    from autoscope.datasets.store import dataset_dir as store_dir

    path = Path(store_dir(stores, name))  # UserError when no dataset is chosen
    if not (path / "manifest.parquet").is_file():
        raise UserError(
            f"dataset '{name}' not built: {path}/manifest.parquet is missing "
            "(run `autoscope dataset build` first)"
        )
    return path


def dataset_version(path: Path) -> str:
    """DVC hash of the dataset folder (`unknown` if it cannot be computed)."""
    try:
        from autoscope.datasets.store import dataset_version as version

        return str(version(path))
    except (ImportError, OSError):
        return "unknown"


def dataset_mpp(path: Path, input_px: int, fallback: float | None) -> float | None:
    """Micrometres per pixel the model sees: the dataset's mpp scaled by the resize to it."""
    import pandas as pd

    try:
        m = pd.read_parquet(path / "manifest.parquet", columns=["mpp", "patch_px"])
    except (OSError, KeyError, ValueError):
        return fallback
    if m.empty:
        return fallback
    return float(m["mpp"].iloc[0]) * float(m["patch_px"].iloc[0]) / float(input_px)


def resolve_precision(value: str) -> str:
    """`auto` -> bf16-mixed on a CUDA GPU with bf16, 16-mixed on other GPUs, 32-true on CPU."""
    import torch

    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def build_classifier(
    arch: Mapping[str, Any], num_classes: int, stores: Stores | None = None
) -> PatchClassifier:
    """The PatchClassifier of a model config, with its `pretrained` weights loaded if set.

    A pretrained start trains as `arch["finetune"]` says: `full` (every weight; the backbone's
    lr x `backbone_lr_mult`) or `linear_probe` (frozen backbone, the head only). Without
    pretrained weights the whole net trains at the optimiser's lr.

    Args:
        arch: the resolved model config (`net`, `mean`, `std`, `channels_last`, `pretrained`,
            `finetune`, `backbone_lr_mult`).
        num_classes: number of output classes.
        stores: where `zoo:<name>` references are looked up (the zoo and archived models);
            needed only when `arch["pretrained"]` is set.

    Raises:
        UserError: unknown zoo name, missing or unfitting weights, a bad `finetune` value.
    """
    from autoscope.models.classifier import PatchClassifier

    model = PatchClassifier.build(arch, num_classes)
    finetune = str(arch.get("finetune") or "full")
    mult = arch.get("backbone_lr_mult")
    model.set_finetune(finetune, 1.0 if mult is None else float(mult))  # checks the values
    ref = arch.get("pretrained")
    if not ref:
        if (model.finetune, model.backbone_lr_mult) != ("full", 1.0):
            print(
                f"model.finetune={finetune}, model.backbone_lr_mult={mult} apply to pretrained "
                "starts only: no model.pretrained, so the whole net trains at the optimiser's lr"
            )
            model.set_finetune("full")
        return model
    if stores is None:
        raise UserError("model.pretrained: no stores given to look the weights up in")
    _load_start(model, arch, str(ref), num_classes, stores)
    return model


def _load_start(
    model: PatchClassifier, arch: Mapping[str, Any], ref: str, num_classes: int, stores: Stores
) -> None:
    """Load the weights of `ref` into the model's net and say in a line or two what happened."""
    from autoscope.models.zoo import load_pretrained, pretrained_entry

    entry = pretrained_entry(ref, stores.zoo, stores.outputs)
    counts = load_pretrained(model.net, Path(entry["weights"]), ref=ref)
    line = f"pretrained {ref}: {counts['loaded']} tensors loaded"
    if counts["head_reinit"]:
        had = counts["file_classes"]
        had_s = f"the weights have {had}" if had is not None else "the weights have no head"
        line += f"; head {counts['head']} re-initialised for {num_classes} classes ({had_s})"
    if counts["ignored"]:
        line += f"; {counts['ignored']} tensors of the file unused"
    print(line)
    for key in ("mean", "std"):
        want, have = entry.get(key), list(arch.get(key) or [])
        if want and [round(float(v), 4) for v in want] != [round(float(v), 4) for v in have]:
            print(
                f"note: {ref} was trained with {key} {list(want)}, model.{key} is {have} "
                f"(set model.{key} to match)"
            )
    if model.finetune == "linear_probe":
        n_all = sum(p.numel() for p in model.parameters())
        n_head = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(
            f"model.finetune=linear_probe: frozen backbone, training the head {model.head_key} "
            f"only ({n_head:,} of {n_all:,} weights)"
        )
    elif model.backbone_lr_mult != 1.0:
        print(f"model.finetune=full: backbone lr x {model.backbone_lr_mult:g}")


def build_module(
    model: PatchClassifier,
    loss: nn.Module,
    optimizer: Callable[..., Any],
    scheduler: Callable[..., Any] | None,
    class_counts: Sequence[int],
    tta: bool,
    module: str = "autoscope.models.module:PatchClassifierModule",
) -> PatchClassifierModule:
    """The LightningModule (`module`, "module:Class"); a loss with a `fit` method (class
    weights) is fitted to the counts (patches per class, or pixels per class)."""
    from autoscope.tasks import locate

    if hasattr(loss, "fit"):
        loss.fit(list(class_counts))
    return locate(module)(
        model,
        loss=loss,
        optimizer=optimizer,
        scheduler=scheduler,
        num_classes=len(class_counts),
        tta=bool(tta),
    )


def make_trainer(
    *,
    ckpt_dir: str | Path,
    logger: Any,
    callbacks: Sequence[Any] = (),
    monitor: str = "val/acc",
    mode: str = "max",
    accelerator: str = "auto",
    devices: int | str = 1,
    precision: str = "auto",
    max_epochs: int = 40,
    max_minutes: float | None = None,
    deterministic: bool | str = "warn",
    val_every_epochs: int = 1,
    log_every_n_steps: int = 10,
) -> L.Trainer:
    """A Lightning Trainer that keeps the best checkpoint on `monitor` in `ckpt_dir`.

    The `_target_` of `trainer.lightning` (`conf/trainer/*.yaml`, a partial): the train stage
    gives `ckpt_dir`, `logger` and the instantiated `trainer.callbacks`.

    Args:
        ckpt_dir: folder of `best.ckpt` (weights only); its parent is the default root dir.
        logger: the run's Lightning logger (`conf/logger/`).
        callbacks: more callbacks (early stopping, lr monitor, an Optuna pruning callback).
        monitor: the metric that picks the best checkpoint (`cfg.metric`).
        mode: `max` or `min`: whether a larger `monitor` is better.
        accelerator: Lightning accelerator (`auto`, `cpu`, `gpu`).
        devices: devices per run.
        precision: Lightning precision, or `auto` (see `resolve_precision`).
        max_epochs: upper bound on epochs.
        max_minutes: wall-clock budget of the fit (None: none).
        deterministic: Lightning's `deterministic` (`warn`: deterministic where kernels allow).
        val_every_epochs: validation (and checkpoint) frequency in epochs.
        log_every_n_steps: step-level logging frequency.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt_dir = Path(ckpt_dir)
    ckpt = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_weights_only=True,
    )
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision=resolve_precision(str(precision)),
        max_epochs=int(max_epochs),
        max_time={"minutes": float(max_minutes)} if max_minutes else None,
        deterministic=deterministic,
        check_val_every_n_epoch=int(val_every_epochs),
        log_every_n_steps=int(log_every_n_steps),
        logger=logger,
        callbacks=[ckpt, *callbacks],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(ckpt_dir.parent),
    )
