"""`autoscope archive` and `autoscope models list`: keep a reviewed run as a versioned model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscope.errors import UserError

if TYPE_CHECKING:
    from autoscope.archive.card import ModelCard
    from autoscope.archive.version import ArchiveSpec, Review


def archive_spec(cfg: Any) -> ArchiveSpec:
    """The typed `ArchiveSpec` of the composed config (`conf/archive/` plus project and paths)."""
    from autoscope.archive.version import ArchiveSpec
    from autoscope.config import project_spec, stores_spec, to_dict

    thr = to_dict(cfg.archive.get("thresholds")) or {}
    return ArchiveSpec(
        project=project_spec(cfg),
        stores=stores_spec(cfg),
        run=str(cfg.run),
        metric=str(cfg.metric),
        metric_mode=str(cfg.metric_mode),
        model_name=str(cfg.archive.model_name),
        alias=None if cfg.archive.get("alias") is None else str(cfg.archive.alias),
        minimum={str(k): _bound(v) for k, v in (thr.get("min") or {}).items()},
        maximum={str(k): _bound(v) for k, v in (thr.get("max") or {}).items()},
        tissue=to_dict(cfg.get("tissue")),
        dataset_version=_dataset_version(cfg),
        study_dir=_study_dir(cfg),
    )


def _bound(value: Any) -> float | None:
    """A threshold as a float; None (`val/acc: null`) lifts a default bound."""
    return None if value is None else float(value)


def _dataset_version(cfg: Any) -> str | None:
    """The version of the recipe's dataset as built here (None when it is not built)."""
    from autoscope.config import stores_spec
    from autoscope.datasets.store import dataset_dir

    name = cfg.dataset.get("name")
    ddir = dataset_dir(stores_spec(cfg), str(name)) if name else None
    if ddir is None or not (ddir / "manifest.parquet").is_file():
        if name:
            print(f"archive: dataset '{name}' is not built here: comparing runs of every dataset")
        return None
    from autoscope.models.build import dataset_version

    version = dataset_version(ddir)
    return None if version == "unknown" else version


def _study_dir(cfg: Any) -> Path | None:
    """The folder naming the champion: `archive.choice_dir` (the pipeline's train output), else
    the sweep folder of the recipe's study (`hpo.study_name`), when the recipe names one."""
    chosen = cfg.archive.get("choice_dir")
    if chosen:
        from autoscope.portable import resolve_path

        return resolve_path(str(chosen), str(cfg.paths.workspace))
    name = (cfg.get("hpo") or {}).get("study_name")
    return Path(cfg.paths.outputs) / "hpo" / str(name) if name else None


def _reviewer(cfg: Any) -> Review:
    """The review step: pick the slide (`archive.review_slide`), draw the engine's heatmap."""
    from functools import partial

    from autoscope.archive.review import add_heatmap, pick_review_slide
    from autoscope.config import stores_spec
    from autoscope.infer.review import draw_review
    from autoscope.infer.spec import InferSpec

    stores = stores_spec(cfg)

    def pick(card: ModelCard) -> str | None:
        from autoscope.datasets.store import dataset_dir
        from autoscope.slides.registry import resolve_slide

        ds = dataset_dir(stores, card.dataset_name) if card.dataset_name else None
        return pick_review_slide(
            cfg.archive.get("review_slide"),
            dataset_dir=ds,
            resolve=lambda ref: str(resolve_slide(stores, ref)["path"]),
        )

    def draw(folder: Path, card: ModelCard, slide: str) -> dict[str, str]:
        return draw_review(folder, slide, InferSpec.from_card(card, {"progress": False}))

    return partial(add_heatmap, pick=pick, draw=draw, root=stores.workspace)


def run(cfg: Any) -> dict:
    """Archive `run` (default: the best run): card, MLflow registry, BentoML store.

    Archiving a run that is already archived changes nothing but the alias.
    """
    from autoscope.archive.version import archive_run

    return archive_run(archive_spec(cfg), review=_reviewer(cfg))


def models_view(cfg: Any, flags: list[str]) -> None:
    """Print a table of the project's archived models (`autoscope models list <recipe>`)."""
    from autoscope.archive import registry
    from autoscope.archive.card import archived_cards
    from autoscope.archive.select import mlflow_client
    from autoscope.archive.tables import format_models

    parser = argparse.ArgumentParser(prog="autoscope models list", add_help=False)
    parser.add_argument("--name", default=None, help="only this model_name")
    args, unknown = parser.parse_known_args(flags)
    if unknown:
        raise UserError(f"models list: unexpected argument '{unknown[0]}' (known: --name NAME)")
    cards = archived_cards(Path(cfg.paths.outputs) / "models")
    if args.name:
        cards = [(d, c) for d, c in cards if c.name.endswith(f"-{args.name}")]
    if not cards:
        print(f"no archived models in project '{cfg.project.name}' (run `autoscope archive`)")
        return
    client = mlflow_client(str(cfg.paths.mlflow_uri))
    aliases = {n: registry.aliases_of(client, n) for n in {c.name for _, c in cards}}
    print(format_models(cards, aliases, str(cfg.metric)))
