"""Apply a trial's parameters to a composed config, as Hydra overrides would.

Each trial is what Hydra would compose for `recipe + command-line overrides + trial overrides`:
a plain key (`model.optimizer.lr`) or a config group choice (`model=resnet18`).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from autoscope.errors import UserError
from autoscope.hpo.space import ParamSpec

_ABSENT = object()


def group_dirs(cfg: Any) -> list[Path]:
    """Folders that hold config groups for this config: the recipe's folder, then `conf/`."""
    from autoscope.config import CONF_DIR, recipe_path

    dirs = []
    if cfg.get("recipe"):
        dirs.append(recipe_path(str(cfg.recipe)).parent)
    return [*dirs, CONF_DIR]


def is_group(cfg: Any, key: str) -> bool:
    """True when `key` names a config group (a folder of choices) rather than a value."""
    return "." not in key and any((d / key).is_dir() for d in group_dirs(cfg))


def key_exists(cfg: Any, key: str) -> bool:
    """True when the dotted `key` is present in `cfg` (a `???` value counts as present)."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT


def to_overrides(cfg: Any, params: dict[str, Any]) -> list[str]:
    """Hydra command-line overrides equivalent to `params` (groups first)."""
    groups = [k for k in params if is_group(cfg, k)]
    rest = [k for k in params if k not in groups]
    return [f"{k}={_fmt(params[k])}" for k in groups + rest]


def _fmt(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str) and not all(ch.isalnum() or ch in "_-./" for ch in v):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(v) if isinstance(v, float) else str(v)


def apply_params(cfg: Any, params: dict[str, Any]) -> Any:
    """Return the trial's config: `cfg` with `params` applied as Hydra overrides (base unchanged).

    With `cfg.recipe` the recipe is composed again with the command-line overrides (`cfg.overrides`
    when the CLI records them) followed by the trial's, so interpolations such as
    `scheduler.max_lr: ${..optimizer.lr}` follow the searched value. Without `cfg.overrides`, a
    section the command line changed keeps those changes and takes only what the trial changed.
    Without `cfg.recipe` (a hand-built config), plain keys are set in place; groups cannot be.

    Args:
        cfg: the composed base config.
        params: config key or group name -> value or choice.
    """
    from omegaconf import DictConfig, OmegaConf, open_dict

    from autoscope.config import compose

    if not params:
        return copy.deepcopy(cfg)
    if not cfg.get("recipe"):
        groups = [k for k in params if isinstance(OmegaConf.select(cfg, k), DictConfig)]
        if groups:
            raise UserError(f"hpo: sweeping config group '{groups[0]}' needs cfg.recipe")
        new = copy.deepcopy(cfg)
        for k, v in params.items():
            OmegaConf.update(new, k, v, merge=False)
        return new
    recipe, stage = str(cfg.recipe), cfg.get("stage")
    trial_ov = to_overrides(cfg, params)
    if cfg.get("overrides") is not None:
        base_ov = [str(o) for o in cfg.overrides if o.split("=")[0].lstrip("+~") not in _OWN]
        return compose(recipe, base_ov + trial_ov, stage)
    trial, plain = compose(recipe, trial_ov, stage), _plain(recipe, stage, str(Path.cwd()))
    new = copy.deepcopy(trial)
    with open_dict(new):
        for k in cfg:
            if (k in params and is_group(cfg, str(k))) or cfg[k] == plain.get(k):
                continue  # swept, or the command line left it alone: the trial's version
            new[k] = copy.deepcopy(cfg[k])
            before = flatten(plain.get(k))
            for path, v in flatten(trial.get(k)).items():
                if before.get(path, _ABSENT) != v:
                    OmegaConf.update(new[k], path, v, force_add=True)
    return new


_OWN = {"recipe", "stage", "multirun"}  # set by compose/the CLI, not user overrides


@functools.lru_cache(maxsize=8)
def _plain(recipe: str, stage: str | None, cwd: str) -> Any:
    """The recipe composed without overrides (cached: it is the same for every trial)."""
    from autoscope.config import compose

    return compose(recipe, [], stage)


def group_choice_cfg(cfg: Any, params: dict[str, Any]) -> Any:
    """The recipe composed with only the group choices in `params` (to see which keys exist)."""
    from autoscope.config import compose

    groups = {k: v for k, v in params.items() if is_group(cfg, k)}
    if not groups or not cfg.get("recipe"):
        return cfg
    return compose(str(cfg.recipe), to_overrides(cfg, groups), cfg.get("stage"))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a config node as {dotted path: value} (lists are leaves)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node)
    if not isinstance(node, dict):
        return {prefix: node} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in node.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, path) if isinstance(v, dict) else {path: v})
    return out


def check_space(cfg: Any, specs: list[ParamSpec]) -> None:
    """Fail before any trial runs when a searched key or group choice does not exist.

    A key under a swept group (`model.width` while `model` is swept) must exist in at least one of
    the group's choices; a trial whose choice lacks it simply does not sample it.

    Raises:
        UserError: one line naming the key (and the file to fix).
    """
    from omegaconf import DictConfig

    from autoscope.config import compose

    nodes: dict[str, list[Any]] = {}
    for s in specs:
        if not is_group(cfg, s.key):
            continue
        if s.type != "categorical":
            raise UserError(
                f"hpo.params['{s.key}']: '{s.key}' is a config group: use type: categorical "
                f"with choices naming its YAML files"
            )
        for c in s.choices:
            if not any((d / s.key / f"{c}.yaml").is_file() for d in group_dirs(cfg)):
                raise UserError(
                    f"hpo.params['{s.key}']: no choice '{c}' in config group '{s.key}' "
                    f"(no conf/{s.key}/{c}.yaml)"
                )
            nodes.setdefault(s.key, []).append(
                compose(str(cfg.recipe), [f"{s.key}={c}"], cfg.get("stage"))
            )
    for s in specs:
        if s.key in nodes:
            continue
        top = s.key.split(".")[0]
        candidates = nodes.get(top, [cfg])
        hits = [n for n in candidates if key_exists(n, s.key)]
        if not hits:
            where = f"any choice of group '{top}'" if top in nodes else "the composed config"
            raise UserError(
                f"hpo.params['{s.key}']: no such key in {where} "
                f"(a typo? see conf/{top}/ and the hpo space YAML)"
            )
        from omegaconf import OmegaConf

        if any(isinstance(OmegaConf.select(n, s.key), DictConfig) for n in hits):
            raise UserError(
                f"hpo.params['{s.key}']: '{s.key}' is a section, not a value: search its keys"
            )
