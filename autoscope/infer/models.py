"""Find an archived model version and rebuild it from its card: the card drives the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoscope.archive.card import CARD, ModelCard, read_card
from autoscope.errors import UserError
from autoscope.infer.spec import InferSpec


def _versions(model_root: Path) -> dict[int, Path]:
    out = {}
    for p in model_root.glob("v*"):
        if p.name[1:].isdigit() and (p / CARD).is_file():
            out[int(p.name[1:])] = p
    return out


def resolve_model_dir(
    models_dir: Path,
    name: str | None,
    version: str | int | None = "latest",
    *,
    mlflow_uri: str | None = None,
    registry_name: str | None = None,
) -> Path:
    """The folder `models_dir/<name>/v<N>/` of an archived model.

    Args:
        models_dir: `outputs/<project>/models`.
        name: model name; None picks the only archived model.
        version: `latest` (or None), `N`, `v<N>`, or an MLflow registry alias (`champion`).
        mlflow_uri, registry_name: where to resolve an alias.

    Raises:
        UserError: no such model, version or alias.
    """
    names = (
        sorted(p.name for p in models_dir.glob("*") if _versions(p)) if models_dir.is_dir() else []
    )
    if not names:
        raise UserError(f"no archived model under {models_dir} (run `autoscope archive` first)")
    if name is None:
        if len(names) > 1:
            raise UserError(f"infer.model.name is needed: archived models are {', '.join(names)}")
        name = names[0]
    if name not in names:
        raise UserError(
            f"unknown model '{name}' in infer.model.name (archived: {', '.join(names)})"
        )
    versions = _versions(models_dir / name)
    ref = "latest" if version is None else str(version)
    if ref == "latest":
        return versions[max(versions)]
    if ref.lstrip("v").isdigit():
        n = int(ref.lstrip("v"))
        if n not in versions:
            known = ", ".join(f"v{k}" for k in sorted(versions))
            raise UserError(
                f"model '{name}' has no version {ref} (infer.model.version; has {known})"
            )
        return versions[n]
    return versions[_alias_version(ref, name, versions, mlflow_uri, registry_name)]


def _alias_version(
    alias: str, name: str, versions: dict[int, Path], mlflow_uri: str | None, reg: str | None
) -> int:
    """Resolve a registry alias through MLflow (the index of archived models)."""
    if not mlflow_uri or not reg:
        raise UserError(
            f"cannot resolve alias '{alias}' of model '{name}': no MLflow registry given"
        )
    from autoscope.archive.registry import resolve_version
    from autoscope.archive.select import mlflow_client

    try:
        n = resolve_version(mlflow_client(mlflow_uri), reg, alias)
    except LookupError as e:
        raise UserError(f"infer.model.version: {e}") from None
    if n not in versions:
        raise UserError(f"alias '{alias}' points at v{n} of '{name}', which is not archived here")
    return n


def load_model(model_dir: Path) -> tuple[Any, ModelCard]:
    """Rebuild the archived classifier (state dict loaded with `weights_only=True`) and its card.

    Raises:
        CardError: the folder holds no usable card.
    """
    from autoscope.models.classifier import PatchClassifier

    model_dir = Path(model_dir)
    card = read_card(model_dir)
    spec = model_dir / card.spec
    model = PatchClassifier.from_files(
        spec if spec.is_file() else model_dir / CARD, model_dir / card.weights
    )
    return model, card


def load_engine(model_dir: str, settings: dict[str, Any]) -> tuple[Any, InferSpec]:
    """In each inference instance: the model and the spec it runs with.

    The card gives `mpp`, `patch_px`, `classes` and the tissue detector; `settings` (the keys
    of `conf/infer/`) how hard to run. Nothing about the model is duplicated in config.
    """
    model, card = load_model(Path(model_dir))
    return model, InferSpec.from_card(card, settings, dir=str(model_dir))
