"""DVC's Hydra integration in a workspace: `dvc exp run -S 'model=resnet18'` reaches the stages.

With `hydra.enabled` in `.dvc/config` (`autoscope init` sets it: `config_dir = recipes`,
`config_name` = the workspace's first recipe), `dvc exp run -S '<override>'` composes that recipe
with AutoSCOPE's `conf/` (the `hydra_plugins.autoscope_conf` search-path plugin) and writes the
resolved config to `params.yaml`; DVC leaves it to the stages to read. `apply` is that reading:
each top-level block of `params.yaml` that differs from the recipe composed as it is replaces the
block (a whole block, so a group choice such as `model=resnet18` brings its own keys, none of
tiny_cnn's), then the command line's own overrides are applied again on top (a sweep's trial
values, `trainer.max_epochs=3`); a block whose group the command line chooses stays the command
line's. `paths` and `hydra` always stay this process's. This module works on plain data;
`autoscope.config.dvc_blocks` / `apply_blocks` compose and set them.

`params.yaml` is taken only while it is newer than the recipe file: a recipe edited after the
experiment wins, with a line saying so. Every use prints one line naming the blocks it set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PARAMS = "params.yaml"  # DVC's Hydra output file (ParamsDependency.DEFAULT_PARAMS_FILE)
KEEP = ("paths", "hydra")  # blocks always composed here (host paths, the job's own settings)


def hydra_settings(workspace: Path) -> dict[str, Any] | None:
    """The `[hydra]` section of the workspace's DVC config when it is enabled, else None."""
    files = [workspace / ".dvc" / "config", workspace / ".dvc" / "config.local"]
    if not files[0].is_file():
        return None
    from configobj import ConfigObj

    section: dict[str, Any] = {}
    for f in files:
        if f.is_file():
            section.update(dict(ConfigObj(str(f)).get("hydra", {})))
    if str(section.get("enabled", "false")).lower() not in ("true", "1", "yes"):
        return None
    return section


def params_for(workspace: Path, recipe_file: Path) -> tuple[dict[str, Any], Path] | None:
    """DVC's composed `params.yaml` for `recipe_file`, when the workspace's Hydra mode names it.

    Returns None when Hydra mode is off, names another recipe or folder, or `params.yaml` is
    missing; prints a line and returns None when the recipe changed after `params.yaml`.
    """
    settings = hydra_settings(workspace)
    if settings is None:
        return None
    params = workspace / PARAMS
    config_dir = (workspace / str(settings.get("config_dir", "conf"))).resolve()
    if (
        not params.is_file()
        or recipe_file.resolve().parent != config_dir
        or recipe_file.stem != str(settings.get("config_name", "config"))
    ):
        return None
    if recipe_file.stat().st_mtime > params.stat().st_mtime:
        print(
            f"DVC Hydra mode: {recipe_file.name} changed after {PARAMS}: the recipe as it is "
            f"(`dvc exp run -S ...` writes {PARAMS} again)",
            flush=True,
        )
        return None
    import yaml

    data = yaml.safe_load(params.read_text()) or {}
    if not isinstance(data, dict):
        return None
    return data, params


def _rebase(value: Any, old: str, new: str) -> Any:
    """`value` with the workspace prefix of the composing machine swapped for this one's."""
    if isinstance(value, dict):
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    if isinstance(value, str) and old and old in value:  # a path, or inside a URI (sqlite:///...)
        return re.sub(re.escape(old) + r"(?=/|$)", lambda _: new, value)
    return value


def chosen_groups(overrides: list[str]) -> set[str]:
    """Top-level groups the command line chooses (`model=resnet18`, `+trainer=gpu`)."""
    out = set()
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "=" in o and "." not in key and "/" not in key:
            out.add(key)
    return out


def blocks_to_set(
    params: dict[str, Any], plain: dict[str, Any], workspace: str, overrides: list[str]
) -> dict[str, Any]:
    """The blocks of `params` that differ from the recipe composed as it is (`plain`)."""
    old = str((params.get("paths") or {}).get("workspace") or "")
    skip = chosen_groups(overrides)
    out = {}
    for key, value in params.items():
        if key in KEEP or key in skip:
            continue
        value = _rebase(value, old, workspace)
        if plain.get(key) != value:
            out[key] = value
    return out
