"""Keep a reviewed run as a versioned model: card, MLflow registry entry, BentoML store model.

`archive_run(spec)` is the whole of `autoscope archive`: choose the run, check it, fill a version
folder (weights, spec, review pictures, card) beside its final place and swap it in, register it
and copy it into the BentoML store. Archiving a run that is archived already changes nothing but
the alias. Concurrent archives of one model take turns under the model store's lock
(`autoscope.locks.store_lock`), so each gets its own version number, folder and registry entry;
the debris of a killed archive (`.v<N>.tmp-<pid>...`) is removed by the next one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoscope.archive import bento_store, registry, select, sources
from autoscope.archive.card import CARD, InputSpec, ModelCard, now_iso, read_card, write_card
from autoscope.atomic import atomic_dir, sweep_stale
from autoscope.errors import UserError
from autoscope.locks import in_stores, store_lock
from autoscope.models.tracking import kept_metrics
from autoscope.project import ClassSpec, ProjectSpec, Stores

Review = Callable[[Path, ModelCard], ModelCard]  # version folder, card -> reviewed card


@dataclass(frozen=True)
class ArchiveSpec:
    """What `autoscope archive` keeps and the bar a run must clear (`conf/archive/`)."""

    project: ProjectSpec
    stores: Stores
    run: str = "best"  # `best` (by metric and metric_mode) or an MLflow run id
    metric: str = "val/acc"
    metric_mode: str = "max"
    model_name: str = "tissue_classification"  # registry name `<project>-<model_name>`
    alias: str | None = "champion"
    minimum: dict[str, float] = field(default_factory=dict)  # metric -> lowest value
    maximum: dict[str, float] = field(default_factory=dict)  # metric -> highest value
    tissue: dict[str, Any] = field(default_factory=dict)  # detector params for the card
    dataset_version: str | None = None  # `best` chooses among this dataset version's runs only
    study_dir: Path | None = None  # the recipe's sweep folder: `best` is its choice when finished

    @property
    def registry_name(self) -> str:
        return registry.registry_name(self.project.name, self.model_name)

    @property
    def train_runs(self) -> Path:
        return self.stores.outputs / "train" / "runs"

    @property
    def models_dir(self) -> Path:
        return self.stores.outputs / "models" / self.model_name


def check_weights(path: Path) -> int:
    """Load the state dict safely (`weights_only=True`); return its parameter count.

    Raises:
        UserError: not a loadable state dict of tensors.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's run
        raise UserError(f"{path}: not a loadable state dict ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a state dict of tensors")
    return int(sum(v.numel() for v in state.values()))


def card_from_run(
    spec: ArchiveSpec, version: int, run_spec: dict[str, Any], run: Any, review: dict[str, str]
) -> ModelCard:
    """The card of a new version from the run's `spec.json` and its MLflow record."""
    from autoscope.loop.lineage import card_lineage

    tags = run.data.tags
    inp = run_spec["input"]
    return ModelCard(
        name=spec.registry_name,
        version=version,
        task=spec.project.task,
        classes=tuple(ClassSpec(c["name"], c.get("color", "#808080")) for c in run_spec["classes"]),
        input=InputSpec(
            patch_px=int(inp["patch_px"]),
            mpp=float(inp["mpp"]),
            mean=tuple(inp.get("mean", InputSpec.mean)),
            std=tuple(inp.get("std", InputSpec.std)),
        ),
        tissue={k: v for k, v in spec.tissue.items() if k != "_target_"},
        metrics=dict(sorted(kept_metrics(run.data.metrics).items())),
        dataset_name=tags.get("dataset_name"),
        dataset_version=tags.get("dataset_version"),
        run_id=run.info.run_id,
        code_version=tags.get("code_version"),
        created=now_iso(),
        project=spec.project.name,
        product=spec.project.product,
        organ=spec.project.organ,
        arch=dict(run_spec["arch"]),
        bentoml_tag=f"{spec.registry_name}:v{version}",
        mlflow_registry={"name": spec.registry_name, "version": version, "alias": spec.alias},
        review=review,
        extra=card_lineage(spec.stores.data, tags.get("dataset_name")),  # the loop's round
    )


def fill_version(
    spec: ArchiveSpec, client: Any, run: Any, version: int, folder: Path, review: Review | None
) -> ModelCard:
    """Fill `folder` with weights, spec, review pictures and the card; return the card."""
    rid = run.info.run_id
    local = spec.train_runs / rid
    files = sources.fetch_run_files(client, spec.stores.mlflow_uri, rid, local, folder / "_in")
    shutil.move(files.pop("model.pt"), folder / "model.pt")
    shutil.move(files.pop("spec.json"), folder / "spec.json")
    pictures: dict[str, str] = {}
    (folder / "review").mkdir()
    for png in files.values():
        key = sources.review_name(png.name)
        if key not in pictures:
            shutil.move(png, folder / "review" / f"{key}.png")
            pictures[key] = f"review/{key}.png"
    shutil.rmtree(folder / "_in")
    params = check_weights(folder / "model.pt")
    run_spec = json.loads((folder / "spec.json").read_text())
    card = replace(card_from_run(spec, version, run_spec, run, pictures), parameters=params)
    write_card(folder, card)  # the reviewer loads the model through its card
    if review is not None:
        card = review(folder, card)
    else:
        card = card.with_review({}, None)
    write_card(folder, card)
    return card


def chosen_run(spec: ArchiveSpec) -> tuple[Any, Any]:
    """The project's MLflow client and the run `spec.run` names (`best`: the recipe's champion).

    Raises:
        UserError: no experiment, an unknown id, no champion (see `select.pick_run`).
    """
    client = select.mlflow_client(spec.stores.mlflow_uri)
    exp_id = select.experiment_id(client, spec.project.name)
    run = select.pick_run(
        client,
        exp_id,
        spec.run,
        spec.metric,
        spec.metric_mode,
        spec.train_runs,
        spec.project.name,
        dataset_version=spec.dataset_version,
        study_dir=spec.study_dir,
    )
    return client, run


def _keep_version(
    spec: ArchiveSpec, client: Any, run: Any, review: Review | None
) -> tuple[int, bool, ModelCard, str]:
    """Allocate (or find) the run's version, fill its folder, register it; under the lock."""
    name, rid = spec.registry_name, run.info.run_id
    version = registry.version_of_run(client, name, rid)
    created = version is None
    if version is None:
        desc = f"{spec.project.product}: {spec.project.task}"
        version = registry.new_version(client, name, run, desc)
    final = spec.models_dir / f"v{version}"
    if not (final / CARD).is_file():
        with atomic_dir(final) as folder:
            fill_version(spec, client, run, version, folder, review)
    card = read_card(final)
    registry.log_model(client, name, version, final)  # the version as an MLflow pyfunc model
    labels = {"project": spec.project.name, "run_id": rid}
    tag = bento_store.save_model(name, f"v{version}", final, labels, {"card": CARD})
    registry.finish_version(
        client, name, version, spec.alias, {"bentoml_tag": tag, "card": str(final / CARD)}
    )
    return version, created, card, tag


def archive_run(spec: ArchiveSpec, review: Review | None = None) -> dict[str, Any]:
    """Archive `spec.run` (default: the best run): card, MLflow registry, BentoML store.

    Returns:
        model, version, run_id, alias, the metric, bentoml_tag, card path, new (bool).

    Raises:
        UserError: no experiment or run, thresholds missed, weights unreadable, stores disagree.
    """
    client, run = chosen_run(spec)
    rid = run.info.run_id
    select.check_thresholds(kept_metrics(run.data.metrics), spec.minimum, spec.maximum, rid)
    name = spec.registry_name
    bento_store.use_bentoml_home(spec.stores.bentoml_home)
    sweep_stale(spec.models_dir)
    with store_lock(spec.models_dir, f"the model store of {name}", **in_stores(spec.stores)):
        version, created, card, tag = _keep_version(spec, client, run, review)
    final = spec.models_dir / f"v{version}"
    return {
        "model": name,
        "version": version,
        "run_id": rid,
        "alias": spec.alias,
        spec.metric: card.metrics.get(spec.metric),
        "bentoml_tag": tag,
        "card": str(final / CARD),
        "new": created,
    }
