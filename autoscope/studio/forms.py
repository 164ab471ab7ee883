"""Launch forms generated from the config groups, turned into CLI words after validation.

Choices come from `conf/<group>/*.yaml`; the overrides a form gives are composed with the recipe
(`StudioContext.compose`) before a job is queued, so a bad value is one 400 line, never a job.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from autoscope.config import CONF_DIR
from autoscope.errors import UserError
from autoscope.studio.settings import StudioContext

TRAIN_GROUPS = ("dataset", "model", "trainer", "hpo")  # groups the train/sweep form offers
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def choices(group: str) -> list[str]:
    """The choices of config group `group` (its YAML files, `_base` files left out)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def group_choices() -> dict[str, list[str]]:
    """Choices of every group the training form offers."""
    return {g: choices(g) for g in TRAIN_GROUPS}


def current(ctx: StudioContext, group: str) -> str | None:
    """The recipe's choice of a group, when its config names itself (`dataset.name`, ...)."""
    node = ctx.config.get(group) or {}
    name = node.get("name") if isinstance(node, dict) else None
    return str(name) if name and str(name) in choices(group) else None


def extra_overrides(text: str) -> list[str]:
    """Free-text overrides (`a=1 b=2`, shell quoting) as a list; 400 when malformed."""
    try:
        words = shlex.split(text or "")
    except ValueError as e:
        raise UserError(f"overrides: {e}") from None
    bad = [w for w in words if "=" not in w or w.startswith("hydra.run")]
    if bad:
        raise UserError(f"overrides: '{bad[0]}' is not key=value")
    return words


def train_words(ctx: StudioContext, form: dict[str, str]) -> list[str]:
    """CLI words of a training run (or a sweep with `-m`) from the form, validated."""
    overrides = []
    for g in TRAIN_GROUPS:
        v = (form.get(g) or "").strip()
        if v:
            if v not in choices(g):
                raise UserError(f"{g}={v}: not a choice of conf/{g}/ ({', '.join(choices(g))})")
            overrides.append(f"{g}={v}")
    for key in ("trainer.max_epochs", "trainer.batch_size", "model.optimizer.lr"):
        v = (form.get(key) or "").strip()
        if v:
            overrides.append(f"{key}={v}")
    overrides += extra_overrides(form.get("overrides", ""))
    ctx.compose(overrides)  # raises UserError with Hydra's message on a bad value
    sweep = form.get("sweep") in ("1", "on", "true")
    return ["train", ctx.recipe, *(["-m"] if sweep else []), *overrides]


def safe_name(value: str, what: str) -> str:
    """A file-name-safe identifier (letters, digits, `_ . -`), else 400."""
    if not _NAME.match(value or ""):
        raise UserError(f"{what} '{value}': use letters, digits, _ . - (at most 64)")
    return value


def project_recipe(form: dict[str, str]) -> tuple[str, str]:
    """(recipe name, YAML text) of a new project's recipe from the projects form."""
    name = safe_name(form.get("name", "").strip(), "project name")
    classes = []
    for part in (form.get("classes") or "").split(","):
        if not part.strip():
            continue
        cname, _, color = part.strip().partition(":")
        color = color.strip() or "#808080"
        if not re.match(r"^#[0-9a-fA-F]{6}$", color):
            raise UserError(f"class {cname}: colour '{color}' is not #rrggbb")
        classes.append(f'    - {{name: {safe_name(cname.strip(), "class")}, color: "{color}"}}')
    if len(classes) < 1:
        raise UserError("classes: give at least one, e.g. tumor:#d62728,stroma:#1f77b4")
    try:
        mpp = float(form.get("target_mpp") or 1.0)
    except ValueError:
        raise UserError(f"target mpp '{form.get('target_mpp')}' is not a number") from None
    task = form.get("task") or "tissue_classification"
    fields = {k: safe_name((form.get(k) or name).strip(), k) for k in ("product", "organ")}
    text = "\n".join(
        [
            f"# Project {name}: made in the Studio's projects form.",
            "defaults:",
            "  - config",
            "  - _self_",
            "project:",
            f"  name: {name}               # folder under data/ and outputs/, MLflow experiment",
            f"  product: {fields['product']}  # the product this project serves",
            f"  organ: {fields['organ']}      # organ the slides come from",
            f"  task: {safe_name(task, 'task')}  # what the model predicts",
            f"  target_mpp: {mpp}          # working resolution (um/px)",
            "  classes:                    # ordered classes with their overlay colours",
            *classes,
            "",
        ]
    )
    return name, text


def recipe_file(ctx: StudioContext, name: str) -> Path:
    """Where the projects form writes a new recipe: the workspace's `recipes/`."""
    return ctx.stores.workspace / "recipes" / f"{safe_name(name, 'recipe')}.yaml"
