"""Builders that turn the composed config into training objects (no training logic here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscope.errors import UserError

if TYPE_CHECKING:
    from autoscope.models.classifier import PatchClassifier
    from autoscope.models.module import PatchClassifierModule


def dataset_dir(cfg: Any) -> Path:
    """The dataset folder named by `cfg.dataset.name` (via `autoscope.datasets.store`).

    Raises:
        UserError: no dataset chosen, or its folder has no manifest.
    """
    from autoscope.datasets.store import dataset_dir as store_dir

    name = (cfg.get("dataset") or {}).get("name")
    path = Path(store_dir(cfg))  # UserError when no dataset is chosen
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


def precision(cfg_precision: str) -> str:
    """`auto` -> bf16-mixed on a CUDA GPU with bf16, 16-mixed on other GPUs, 32-true on CPU."""
    import torch

    if cfg_precision != "auto":
        return cfg_precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def build_classifier(cfg: Any, num_classes: int) -> PatchClassifier:
    """The PatchClassifier of `cfg.model`, with `model.pretrained` weights loaded if set."""
    from autoscope.models.classifier import PatchClassifier
    from autoscope.models.zoo import load_pretrained, resolve_pretrained

    model = PatchClassifier.build(cfg.model, num_classes)
    ref = cfg.model.get("pretrained")
    if ref:
        path = resolve_pretrained(str(ref), cfg.paths.zoo, cfg.paths.outputs)
        counts = load_pretrained(model.net, path)
        print(f"pretrained {ref}: {counts['loaded']} tensors loaded, {counts['skipped']} new")
    return model


def build_module(cfg: Any, model: Any, class_counts: list[int]) -> PatchClassifierModule:
    """The LightningModule: loss (fitted to the class counts), optimiser and scheduler partials."""
    from hydra.utils import instantiate

    from autoscope.models.module import PatchClassifierModule

    loss = instantiate(cfg.model.loss)
    if hasattr(loss, "fit"):
        loss.fit(class_counts)
    sched = instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None
    return PatchClassifierModule(
        model,
        loss=loss,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=sched,
        num_classes=len(class_counts),
        tta=bool(cfg.trainer.tta),
    )


def build_trainer(cfg: Any, logger: Any, ckpt_dir: Path, extra_callbacks: list) -> Any:
    """A Lightning Trainer with checkpointing and early stopping on `cfg.metric`."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    t = cfg.trainer
    ckpt = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="best",
        monitor=cfg.metric,
        mode=cfg.metric_mode,
        save_top_k=1,
        save_weights_only=True,
    )
    stop = EarlyStopping(
        monitor=cfg.metric, mode=cfg.metric_mode, patience=int(t.patience), min_delta=t.min_delta
    )
    lr_monitor = [LearningRateMonitor(logging_interval="epoch")] if logger else []
    max_time = {"minutes": float(t.max_minutes)} if t.get("max_minutes") else None
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        precision=precision(str(t.precision)),
        max_epochs=int(t.max_epochs),
        max_time=max_time,
        deterministic=t.deterministic,
        check_val_every_n_epoch=int(t.val_every_epochs),
        log_every_n_steps=int(t.log_every_n_steps),
        logger=logger,
        callbacks=[ckpt, stop, *lr_monitor, *extra_callbacks],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(ckpt_dir.parent),
    )


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
