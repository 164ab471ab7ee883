"""The end of a training run: the kept weights' validation and test figures, and split warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def final_evaluation(trainer: Any, module: Any, dm: Any, keep_last: bool) -> tuple:
    """Restore the best checkpoint (unless `keep_last`), validate and test it, log nothing.

    Returns:
        (val metrics, test metrics (empty without a test split), the step of the kept weights'
        point on the `val/*` curves: Lightning logs an epoch's validation at the step of its
        last batch, the global step the checkpoint (or the fit) ended at minus one).
    """
    import torch

    best = None if keep_last else trainer.checkpoint_callback.best_model_path
    steps = trainer.global_step
    if best:
        saved = torch.load(best, map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state_dict"])
        steps = int(saved.get("global_step", steps))
    step = max(steps - 1, 0)
    loggers, trainer.loggers = trainer.loggers, []  # the caller logs the figures, once
    try:
        val = trainer.validate(module, datamodule=dm, verbose=False)[0]
        has_test = len(dm.splits["test"][1]) > 0  # a dataset without a test split still trains
        test = trainer.test(module, datamodule=dm, verbose=False)[0] if has_test else {}
    finally:
        trainer.loggers = loggers
    return val, test, step


def warn_few_val_groups(ddir: Path, least: Any) -> None:
    """One warning line when the validation split is too small (in groups) to rank models."""
    import pandas as pd

    from autoscope.datasets.splits import val_groups

    if not least:
        return
    try:
        n = val_groups(pd.read_parquet(ddir / "manifest.parquet", columns=["split", "group"]))
    except (OSError, KeyError, ValueError):
        return
    if n < int(least):
        print(
            f"warning: the validation split of {ddir.name} holds {n} group(s) (< trainer."
            f"min_val_groups={least}): its accuracy moves in steps of whole slides/patients and "
            "ranks models by chance; give val more groups (dataset.split.fractions)",
            flush=True,
        )
