"""The training kit of a task family: the five steps of a run that differ between families.

`autoscope train` runs the rest (logger, MLflow, checkpoints, early stopping, pruning, kept
metrics, artefacts, sweeps) the same for every family; `autoscope.tasks.entry(task, "kit")` names
the kit. Every piece is a "module:attr" string so that naming a kit imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainKit:
    """What a family supplies to a training run (each a "module:attr").

    Attributes:
        data_module: LightningDataModule class, called with `dataset_dir=`, `num_classes=` and the
            keys of `trainer.data`; after `setup()` it has `.splits` {split: (x, y)},
            `.class_counts()` and `.patch_px`. None: `trainer.data._target_` (classification).
        build_model: `(arch, num_classes, stores) -> nn.Module` (a PatchClassifier wrapper).
        build_module: `(model, *, loss, optimizer, scheduler, class_counts, tta)` -> the
            LightningModule logging `train/loss`, `val/*` and `test/*`.
        make_spec: `(arch, classes, mpp, patch_px) -> dict`: the `spec.json` of the weights.
        test_report: `(module, test_split, names, run_dir, grid, seed) -> (metrics, pictures)`.
    """

    data_module: str | None
    build_model: str
    build_module: str
    make_spec: str
    test_report: str

    def get(self, step: str) -> Any:
        """The callable of `step` (one of the attributes)."""
        from autoscope.tasks import locate

        return locate(getattr(self, step))


def classification_report(
    module: Any, test_split: tuple[Any, Any], names: list[str], run_dir: Path, grid: int, seed: int
) -> tuple[dict[str, float], list[Path]]:
    """Confusion matrix, per-class figures and sample predictions of a patch classifier."""
    from autoscope.models.artifacts import test_report

    return test_report(module, test_split[0], names, run_dir, grid, seed)


CLASSIFICATION = TrainKit(
    data_module=None,
    build_model="autoscope.models.build:build_classifier",
    build_module="autoscope.models.build:build_module",
    make_spec="autoscope.models.classifier:make_spec",
    test_report="autoscope.models.kit:classification_report",
)
