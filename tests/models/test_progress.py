"""The per-epoch progress line of a fit (`autoscope.models.progress.EpochProgress`)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from tinydata import make_tiny_dataset

from autoscope.config import compose
from autoscope.models import archs
from autoscope.models.classifier import PatchClassifier
from autoscope.models.data import PatchDataModule
from autoscope.models.module import PatchClassifierModule
from autoscope.models.progress import EpochProgress, clock

NUM = r"\d+\.\d{4}"
BUDGET_LINE = re.compile(
    rf"^epoch (\d+)/3 loss \d+\.\d{{3}} val/acc ({NUM}) \(best ({NUM})\) "
    r"(\d+m)?\d+s elapsed, \dm\d\ds left of 5\.0 min$"
)


def _fit(folder: Path, progress: EpochProgress, **trainer: object) -> tuple[L.Trainer, object]:
    torch.manual_seed(0)
    dm = PatchDataModule(
        folder, 32, 64, None, seed=0, augment={}, mean=[0.5] * 3, std=[0.2] * 3, num_classes=2
    )
    net = archs.small_resnet(2, widths=[8, 16], depths=[1, 1], stem_width=8)
    module = PatchClassifierModule(
        PatchClassifier(net),
        torch.nn.CrossEntropyLoss(),
        functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        None,
        2,
    )
    fit = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[progress],
        **trainer,
    )
    fit.fit(module, datamodule=dm)
    return fit, (module, dm)


def test_one_line_per_epoch_with_metric_best_and_budget(tmp_path: Path, capsys) -> None:
    folder = make_tiny_dataset(tmp_path / "ds")
    progress = EpochProgress("val/acc", "max", max_minutes=5.0)
    trainer, (module, dm) = _fit(folder, progress, max_epochs=3, num_sanity_val_steps=1)
    trainer.validate(module, datamodule=dm, verbose=False)  # after the fit: no line
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines  # nothing for the sanity check nor the later validate
    found = [BUDGET_LINE.match(line) for line in lines]
    assert all(found), lines
    epochs = [int(m.group(1)) for m in found]
    values = [float(m.group(2)) for m in found]
    bests = [float(m.group(3)) for m in found]
    assert epochs == [1, 2, 3]
    assert bests == [max(values[: i + 1]) for i in range(3)]


def test_epochs_without_validation_and_no_budget(tmp_path: Path, capsys) -> None:
    folder = make_tiny_dataset(tmp_path / "ds")
    progress = EpochProgress("val/loss", "min", max_minutes=None, trial=4)
    _fit(folder, progress, max_epochs=2, num_sanity_val_steps=0, check_val_every_n_epoch=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"\[trial #4\] epoch 1/2 loss \d+\.\d{3} \d+s elapsed", lines[0])
    assert re.fullmatch(
        rf"\[trial #4\] epoch 2/2 loss \d+\.\d{{3}} val/loss {NUM} \(best {NUM}\) \d+s elapsed",
        lines[1],
    )


def test_clock() -> None:
    assert [clock(s) for s in (0, 42.4, 102, 3900, -5)] == ["0s", "42s", "1m42s", "1h05m", "0s"]


@pytest.mark.parametrize("trainer", ["cpu_fast", "gpu"])
def test_trainer_configs_wire_the_progress_line(trainer: str, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = compose(
        "demo", [f"paths.workspace={tmp_path}", f"trainer={trainer}", "trainer.max_minutes=7"]
    )
    p = instantiate(cfg.trainer.callbacks.progress)
    assert isinstance(p, EpochProgress) and p.monitor == cfg.metric and p.max_minutes == 7.0
    assert p.prefix == ""
    job = compose("demo", [f"paths.workspace={tmp_path}", f"trainer={trainer}", "++hpo.trial=5"])
    assert instantiate(job.trainer.callbacks.progress).prefix == "[trial #5] "
