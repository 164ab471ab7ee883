"""The shipped search spaces (conf/hpo/*.yaml) fit the real model/trainer configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from autoscope.config import CONF_DIR, compose, to_dict
from autoscope.hpo.space import flatten, parse_space

SPACES = sorted(p.stem for p in (CONF_DIR / "hpo").glob("*.yaml") if p.stem != "none")


def test_small_and_default_are_shipped() -> None:
    assert {"small", "default"} <= set(SPACES)


@pytest.mark.parametrize("space", SPACES)
def test_space_keys_exist_and_targets_bind(space: str, tmp_path: Path) -> None:
    base = [f"paths.workspace={tmp_path}", f"hpo={space}"]
    cfg = compose("demo", base)
    specs = parse_space(to_dict(cfg.hpo.params))
    groups = {s.key: s for s in specs if "." not in s.key}
    nodes = {
        g: [compose("demo", [*base, f"{g}={c}"]) for c in s.choices] for g, s in groups.items()
    }
    for s in specs:
        if s.key in groups:
            continue
        where = nodes.get(s.key.split(".")[0], [cfg])
        absent = object()  # a key may exist with a null value (the demo's model.input_px)
        assert any(OmegaConf.select(n, s.key, default=absent) is not absent for n in where), s.key
    for k in flatten(to_dict(cfg.hpo.fixed)):
        assert OmegaConf.select(cfg, k) is not None, k
    assert cfg.hpo.study_name.startswith(cfg.project.name) and cfg.hpo.trial is None
    assert type(instantiate(cfg.hpo.sampler, seed=1)).__name__ == "TPESampler"
    assert instantiate(cfg.hpo.pruner) is not None
    assert {"n_trials", "timeout_s", "storage", "sampler", "pruner", "params"} <= set(cfg.hpo)
