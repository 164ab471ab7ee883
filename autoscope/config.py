"""Composing recipes with Hydra: `conf/` is the vocabulary, `recipes/` the sentences."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autoscope.errors import UserError

if TYPE_CHECKING:
    from autoscope.project import ProjectSpec, Stores

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = Path(__file__).resolve().parent / "conf"  # package data: the vocabulary
RECIPES_DIR = ROOT / "recipes"


def list_recipes() -> list[str]:
    """Names of the recipes shipped in `recipes/`."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(recipe: str) -> Path:
    """Resolve a recipe name (`demo`) or a path to a YAML file."""
    p = Path(recipe)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p.resolve()
    named = RECIPES_DIR / f"{recipe}.yaml"
    if named.is_file():
        return named
    known = ", ".join(list_recipes()) or "none"
    raise UserError(
        f"unknown recipe '{recipe}' (known recipes: {known}; or give a path to a .yaml)"
    )


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("autoscope_root"):
        OmegaConf.register_new_resolver("autoscope_root", lambda: str(Path.cwd().resolve()))


def compose(recipe: str, overrides: list[str] | None = None, stage: str | None = None):
    """Compose a recipe plus Hydra overrides into a resolved, read-only-structured DictConfig.

    Args:
        recipe: recipe name under `recipes/` or a path to a recipe YAML.
        overrides: Hydra override strings (`key=value`, `group=choice`, `+new=1`).
        stage: stage name stored as `cfg.stage`.

    Raises:
        UserError: unknown recipe, config group choice or key, or a malformed override.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    _register_resolvers()
    path = recipe_path(recipe)
    ov = list(overrides or [])
    ov.append(f"recipe='{recipe}'")
    if stage is not None:
        ov.append(f"stage={stage}")
    ov.append(f"hydra.searchpath=[file://{CONF_DIR}]")
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = hydra_compose(config_name=path.stem, overrides=ov)
        OmegaConf.resolve(cfg)
        cfg.overrides = list(overrides or [])
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        msg = " ".join(lines[:2]) if lines else type(e).__name__
        raise UserError(f"recipe '{recipe}': {msg}") from None
    return cfg


def project_spec(cfg) -> "ProjectSpec":
    """The typed project (`cfg.project`) that library code takes."""
    from autoscope.project import ClassSpec, ProjectSpec

    p = cfg.project
    return ProjectSpec(
        name=str(p.name),
        task=str(p.get("task", "tissue_classification")),
        classes=tuple(ClassSpec(str(c.name), str(c.get("color", "#808080"))) for c in p.classes),
        target_mpp=None if p.get("target_mpp") is None else float(p.target_mpp),
        product=str(p.get("product", "")),
        organ=str(p.get("organ", "")),
    )


def stores_spec(cfg) -> "Stores":
    """The typed stores (`cfg.paths`) that library code takes."""
    from autoscope.project import Stores

    p = cfg.paths
    return Stores(
        workspace=Path(p.workspace),
        data=Path(p.data),
        outputs=Path(p.outputs),
        state=Path(p.state),
        mlflow_uri=str(p.mlflow_uri),
        mlflow_artifacts=Path(p.mlflow_artifacts),
        optuna_storage=str(p.optuna_storage),
        bentoml_home=Path(p.bentoml_home),
        zoo=Path(p.zoo),
    )


def to_dict(node) -> dict:
    """A config node as plain resolved Python containers (for typed specs and `_target_` args)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if node is not None else {}
