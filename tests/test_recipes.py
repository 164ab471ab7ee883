"""torchtune-style: every recipe, with every choice of every config group, composes, and every
`_target_` in it resolves to a public callable whose signature binds the arguments given, all
without instantiating anything."""

from __future__ import annotations

import inspect

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from autoscope.config import CONF_DIR, compose, list_recipes

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
CHOICES = [
    (g, p.stem)
    for g in GROUPS
    for p in sorted((CONF_DIR / g).glob("*.yaml"))
    if not p.stem.startswith("_")
]


def _targets(node, path: str = ""):
    """Every (path, node) holding a `_target_` under `node`."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for k in node:
            yield from _targets(node._get_node(k), f"{path}.{k}" if path else str(k))
    elif isinstance(node, ListConfig):
        for i, v in enumerate(node):
            yield from _targets(v, f"{path}[{i}]")


def _check_target(path: str, node: DictConfig) -> None:
    from hydra._internal.utils import _locate

    name = str(node._target_)
    assert not any(part.startswith("_") for part in name.split(".")), f"{path}: private {name}"
    fn = _locate(name)
    assert callable(fn), f"{path}: {name} is not callable"
    args = {
        k: v
        for k, v in OmegaConf.to_container(node, resolve=False).items()
        if not k.startswith("_")
    }
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        return
    sig.bind_partial(**args)  # every key given is an argument the target takes


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipe_composes_and_its_targets_bind(recipe, tmp_path):
    cfg = compose(recipe, [f"paths.workspace={tmp_path}"])
    assert cfg.project.name and [c.name for c in cfg.project.classes]
    assert cfg.paths.data.startswith(str(tmp_path))
    for key in ("stage", "recipe", "overrides", "multirun"):  # the old pseudo-keys are gone
        assert key not in cfg
    found = list(_targets(cfg))
    assert found, "a recipe with no _target_ at all"
    for path, node in found:
        _check_target(path, node)


@pytest.mark.parametrize(("group", "choice"), CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_group_choice_composes_and_binds(group, choice, tmp_path):
    cfg = compose("demo", [f"paths.workspace={tmp_path}", f"{group}={choice}"])
    for path, node in _targets(cfg[group], group):
        _check_target(path, node)
