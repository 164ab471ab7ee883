"""MLflow model registry: the index of archived models (versions, aliases, BentoML tags)."""

from __future__ import annotations

from typing import Any


def registry_name(project: str, model_name: str) -> str:
    """Registry name of a project's model: `<project>-<model_name>`."""
    return f"{project}-{model_name}"


def version_of_run(client: Any, name: str, run_id: str) -> int | None:
    """The registry version already made from `run_id`, if any (archiving is idempotent)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return None
    versions = sorted(int(v.version) for v in found)
    return versions[0] if versions else None


def new_version(client: Any, name: str, run_id: str, source: str, description: str) -> int:
    """Register a new model version for `run_id` (creating the registered model if needed)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)
    mv = client.create_model_version(name, source=source, run_id=run_id, description=description)
    return int(mv.version)


def finish_version(client: Any, name: str, version: int, alias: str | None, tags: dict) -> None:
    """Tag a version (BentoML tag, card path) and point `alias` at it."""
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    if alias:
        client.set_registered_model_alias(name, alias, str(version))


def resolve_version(client: Any, name: str, ref: str | int) -> int:
    """A version number from a number, `v<N>` or an alias (e.g. `champion`).

    Raises:
        LookupError: unknown model, version or alias.
    """
    from mlflow.exceptions import MlflowException

    text = str(ref)
    try:
        if text.lstrip("v").isdigit():
            return int(client.get_model_version(name, text.lstrip("v")).version)
        return int(client.get_model_version_by_alias(name, text).version)
    except MlflowException:
        raise LookupError(f"no version or alias '{ref}' of registered model '{name}'") from None


def aliases_of(client: Any, name: str) -> dict[int, list[str]]:
    """Version -> aliases of a registered model (empty if it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return {}
    out: dict[int, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        out.setdefault(int(version), []).append(alias)
    return out
