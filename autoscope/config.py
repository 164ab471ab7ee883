"""Composing recipes with Hydra: `conf/` is the vocabulary, `recipes/` the sentences."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscope.errors import UserError

if TYPE_CHECKING:
    from autoscope.project import ProjectSpec, Stores

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"  # package data: the vocabulary (config groups)
BUILTIN_RECIPES = PACKAGE_DIR / "recipes"  # package data: the recipes shipped with autoscope


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up, first hit wins: the workspace's `recipes/`, then built-ins."""
    dirs = [Path.cwd() / "recipes", BUILTIN_RECIPES]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return out


def list_recipes() -> list[str]:
    """Names of the recipes found in the workspace's `recipes/` and the built-in ones."""
    return sorted({p.stem for d in recipe_dirs() for p in d.glob("*.yaml")})


def recipe_path(recipe: str) -> Path:
    """Resolve a recipe name (`demo`) or a path to a YAML file."""
    p = Path(recipe)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p.resolve()
    for d in recipe_dirs():
        named = d / f"{recipe}.yaml"
        if named.is_file():
            return named.absolute()
    known = ", ".join(list_recipes()) or "none"
    raise UserError(
        f"unknown recipe '{recipe}' (known recipes: {known}; or give a path to a .yaml)"
    )


def register_resolvers() -> None:
    """OmegaConf resolvers the configs use (`${autoscope_root:}`: the workspace, i.e. the cwd)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("autoscope_root"):
        OmegaConf.register_new_resolver("autoscope_root", lambda: str(Path.cwd().resolve()))


def searchpath_override() -> str:
    """The Hydra override that puts `conf/` (package data) on the search path."""
    return f"hydra.searchpath=[file://{CONF_DIR}]"


def error_message(e: BaseException) -> str:
    """Hydra's whole message (the \"Available options\" list included), its cause appended."""
    lines = [ln.rstrip() for ln in str(e).strip().splitlines() if ln.strip()]
    cause = e.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in str(e):
        lines += [ln.rstrip() for ln in str(cause).strip().splitlines() if ln.strip()]
    return "\n".join(lines) if lines else type(e).__name__


def compose(
    recipe: str,
    overrides: list[str] | None = None,
    stage: str | None = None,
    dvc_params: bool = True,
):
    """Compose a recipe plus Hydra overrides into a resolved DictConfig (Hydra's compose API).

    For views, tests and the Studio; actions run as a real Hydra app (`autoscope.stages.app`).

    Args:
        recipe: recipe name (workspace `recipes/`, then built-ins) or a path to a recipe YAML.
        overrides: Hydra override strings (`key=value`, `group=choice`, `+new=1`, `~key`).
        stage: unused (kept for callers of the older signature).
        dvc_params: take the blocks DVC's Hydra mode wrote to `params.yaml` for this recipe
            (`autoscope.dvc_hydra`); False: the recipe as it is.

    Raises:
        UserError: unknown recipe, config group choice or key, a malformed override or a value
            of the wrong type; the message is Hydra's full text.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    path = recipe_path(recipe)
    ov = [*(overrides or []), searchpath_override()]
    blocks: dict = {}
    if dvc_params:
        blocks = dvc_blocks(path, list(overrides or []))
    try:
        check_value_types(path, list(overrides or []))
        with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = hydra_compose(config_name=path.stem, overrides=ov)
        OmegaConf.resolve(cfg)
        if blocks:
            apply_blocks(cfg, blocks, list(overrides or []))
            OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise UserError(f"recipe '{recipe}': {error_message(e)}") from None
    return cfg


def dvc_blocks(
    recipe_file: Path, overrides: list[str], workspace: Path | None = None
) -> dict[str, Any]:
    """The blocks DVC's Hydra-mode `params.yaml` sets for a job of `recipe_file` (`dvc_hydra`).

    Empty unless the workspace's (default: the cwd) Hydra mode names this recipe; composes the
    recipe as it is once to compare, and prints one line naming the blocks it sets.
    """
    from autoscope import dvc_hydra

    workspace = (workspace or Path.cwd()).resolve()
    found = dvc_hydra.params_for(workspace, recipe_file)
    if found is None:
        return {}
    params, path = found
    from omegaconf import OmegaConf

    plain = compose(str(recipe_file), [f"paths.workspace={workspace}"], dvc_params=False)
    data = OmegaConf.to_container(plain, resolve=True)
    blocks = dvc_hydra.blocks_to_set(params, data, str(workspace), overrides)
    if blocks:
        print(
            f"DVC Hydra mode: {path.name} (dvc exp run -S) sets {', '.join(sorted(blocks))} "
            f"of recipe {recipe_file.stem}",
            flush=True,
        )
    return blocks


def apply_blocks(cfg: Any, blocks: dict[str, Any], overrides: list[str]) -> None:
    """Set `cfg`'s `blocks` (in place), then the job's own value `overrides` of them again."""
    if not blocks:
        return
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        for key, value in blocks.items():
            cfg[key] = OmegaConf.create(value)
    again = [o for o in overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] in blocks]
    if again:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(again)
        parsed = [o for o in parsed if not o.is_sweep_override()]  # the sweeper's, not values
        with open_dict(cfg):
            ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)


def compose_with_choices(recipe_file: Path, workspace: Path) -> tuple[dict, dict[str, Any]]:
    """A workspace recipe composed in `workspace` (resolved, DVC's Hydra-mode blocks set, as
    plain data) and the config group choices it made (`hydra.runtime.choices`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    register_resolvers()
    path = recipe_path(str(recipe_file))
    blocks = dvc_blocks(path, [], workspace)
    with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
        cfg = hydra_compose(
            config_name=path.stem,
            overrides=[f"paths.workspace={workspace}", searchpath_override()],
            return_hydra_config=True,
        )
        HydraConfig.instance().set_config(cfg)
        choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    apply_blocks(cfg, blocks, [])
    return OmegaConf.to_container(cfg, resolve=True), choices


def check_value_types(path: Path, overrides: list[str]) -> None:
    """Refuse `key=value` overrides whose value cannot have the type of the key's default.

    `trainer.max_epochs=abc` (an int key) or `trainer.tta=maybe` (a bool key) fail here with one
    line, before anything runs; a null default takes any value, ints are accepted for floats.
    Sweep values (`a=1,2`, `range(...)`) are checked one by one.

    Raises:
        UserError: naming the key, the value given and the type expected.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parsed = OverridesParser.create().parse_overrides(
        [o for o in overrides if not o.startswith("hydra.") and not o.startswith("hydra/")]
    )
    plain = [o for o in parsed if not o.is_delete() and not o.is_add() and "." in o.key_or_group]
    if not plain:
        return
    groups = [
        o.input_line for o in parsed if "." not in o.key_or_group and not o.is_sweep_override()
    ]
    with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
        base = hydra_compose(config_name=path.stem, overrides=[*groups, searchpath_override()])
    for o in plain:
        default = OmegaConf.select(base, o.key_or_group, default=None, throw_on_missing=False)
        if default is None or not isinstance(default, (bool, int, float)):
            continue
        values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        for v in values:
            if _fits(default, v):
                continue
            want = type(default).__name__
            raise UserError(
                f"{o.key_or_group}={v}: expected {'a' if want != 'int' else 'an'} {want} "
                f"(the default is {default!r})"
            )


def _fits(default: bool | int | float, v) -> bool:
    if v is None:
        return True
    if isinstance(default, bool):
        return isinstance(v, bool)
    if isinstance(default, int):
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def project_spec(cfg) -> ProjectSpec:
    """The typed project (`cfg.project`) that library code takes."""
    from autoscope.project import ClassSpec, ProjectSpec
    from autoscope.tasks import family

    p = cfg.project
    task = str(p.get("task", "tissue_classification"))
    family(task)  # an unknown task is one clear line, before anything runs
    return ProjectSpec(
        name=str(p.name),
        task=task,
        classes=tuple(ClassSpec(str(c.name), str(c.get("color", "#808080"))) for c in p.classes),
        target_mpp=None if p.get("target_mpp") is None else float(p.target_mpp),
        product=str(p.get("product", "")),
        organ=str(p.get("organ", "")),
    )


def stores_spec(cfg) -> Stores:
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
