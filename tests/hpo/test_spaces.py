"""The shipped search spaces (conf/hpo/*.yaml) fit the real model/trainer configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from autoscope.hpo.apply import check_space
from hydra.utils import instantiate

from autoscope.config import CONF_DIR, compose
from autoscope.hpo.space import parse_space
from autoscope.hpo.sweeper import _fixed

SPACES = sorted(p.stem for p in (CONF_DIR / "hpo").glob("*.yaml") if p.stem != "none")


def test_small_and_default_are_shipped() -> None:
    assert {"small", "default"} <= set(SPACES)


@pytest.mark.parametrize("space", SPACES)
def test_space_keys_exist_and_targets_bind(space: str, tmp_path: Path) -> None:
    cfg = compose("demo", [f"paths.workspace={tmp_path}", f"hpo={space}", "multirun=true"], "train")
    specs = parse_space(cfg.hpo.params)
    check_space(cfg, specs)  # raises UserError on a key the model/trainer configs do not have
    assert _fixed(cfg)
    assert cfg.hpo.study_name.startswith(cfg.project.name)
    assert type(instantiate(cfg.hpo.sampler, seed=1)).__name__ == "TPESampler"
    assert instantiate(cfg.hpo.pruner) is not None
    keys = set(cfg.hpo)
    assert {"n_trials", "timeout_s", "storage", "sampler", "pruner", "params"} <= keys
