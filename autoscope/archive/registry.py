"""MLflow model registry: the index of archived models (versions, aliases, BentoML tags)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoscope.archive.card import read_card


@contextmanager
def _use_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to `uri` for a moment (restored after)."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri as use

    with use(uri):
        yield


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


def new_version(client: Any, name: str, run: Any, description: str) -> int:
    """Register a new version of `run`'s model (creating the registered model if needed).

    The version is an MLflow model: its source is `models:/<id>` of a new logged model of the
    run, pending until `log_model` fills it with the archived version folder.
    """
    from mlflow.entities import LoggedModelOutput
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)
    rid = run.info.run_id
    model = client.create_logged_model(
        run.info.experiment_id, name=name, source_run_id=rid, tags={"autoscope.registry": name}
    )
    client.log_outputs(rid, [LoggedModelOutput(model.model_id, step=0)])
    # MLflow's SQL registry looks a `models:/<id>` source up through the global tracking URI
    with _use_tracking_uri(client.tracking_uri):
        mv = client.create_model_version(
            name,
            source=f"models:/{model.model_id}",
            run_id=rid,
            description=description,
            model_id=model.model_id,
        )
    return int(mv.version)


def model_id_of(client: Any, name: str, version: int) -> str | None:
    """The logged model a version was made from (`models:/<model id>`), else None."""
    mv = client.get_model_version(name, str(version))
    source = str(mv.source or "")
    if mv.model_id:
        return str(mv.model_id)
    rest = source.removeprefix("models:/")
    return rest if rest != source and rest and "/" not in rest else None


def log_model(client: Any, name: str, version: int, folder: Path) -> str | None:
    """Fill the version's MLflow model with the archived `folder` (card, spec, weights).

    Idempotent: a model that is ready already is kept. Versions registered before versions
    were MLflow models (no model id) are left as they are.

    Returns:
        the logged model's id, or None for such an old version.
    """
    model_id = model_id_of(client, name, version)
    if not model_id:
        return None
    from autoscope.archive import pyfunc  # imports MLflow's pyfunc: only when logging

    pyfunc.log_version(client, model_id, folder, read_card(folder))
    return model_id


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
