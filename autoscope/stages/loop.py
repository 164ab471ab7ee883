"""`autoscope refine|select|loop correct`: wiring only; the work is in autoscope.loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoscope.errors import UserError


def _model(cfg: Any) -> Any | None:
    """The archived model `loop.model` names (None: no model, colour/texture features)."""
    if cfg.loop.get("model") is None:
        return None
    from autoscope.config import stores_spec
    from autoscope.infer.models import load_model, resolve_model_dir

    models = Path(stores_spec(cfg).outputs) / "models"
    model, _ = load_model(resolve_model_dir(models, str(cfg.loop.model), cfg.loop.model_version))
    return model


def _round_dir(cfg: Any, kind: str, name: str, ds_dir: Path | None) -> tuple[Path, int]:
    """<loop.out_root>/<kind>/<dataset>/round_<N>: N from `loop.round` or the lineage, plus 1."""
    n = cfg.loop.get("round")
    if n is None:
        lin = ds_dir / "lineage.json" if ds_dir else None
        n = (json.loads(lin.read_text())["round"] + 1) if lin and lin.is_file() else 1
    return Path(str(cfg.loop.out_root)) / kind / name / f"round_{int(n)}", int(n)


def _common(cfg: Any) -> tuple[Any, Any, Any]:
    from autoscope.config import project_spec, stores_spec
    from autoscope.slides.registry import load_registry

    stores = stores_spec(cfg)
    return project_spec(cfg), stores, load_registry(stores)


def refine(cfg: Any) -> dict:
    """Review queue of likely mislabelled patches of `cfg.dataset`."""
    from autoscope.datasets.store import dataset_dir
    from autoscope.loop.queue import write_queue
    from autoscope.loop.rounds import RefineSpec, refine

    project, stores, registry = _common(cfg)
    ds = dataset_dir(stores, cfg.dataset.get("name"))
    r = cfg.refine
    spec = RefineSpec(int(r.folds), float(r.c), int(r.queue_size), tuple(r.splits), int(cfg.seed))
    table, images, summary = refine(ds, spec, project.class_names, _model(cfg))
    out, n = _round_dir(cfg, "refine", ds.name, ds)
    stats = json.loads((ds / "stats.json").read_text())
    result = write_queue(
        out,
        table,
        images,
        kind="review",
        slides=registry,
        mpp=float(stats["mpp"]),
        patch_px=int(stats["patch_px"]),
        classes=project.class_dicts(),
        round_no=n,
        dataset=ds.name,
    )
    print(f"review queue: {result['table']}  sheet: {result['sheet']}", flush=True)
    return {**summary, "queued": result["queued"], "dir": str(out), "round": n}


def select(cfg: Any) -> dict:
    """Regions to annotate on the registered slides' unlabelled tissue."""
    from autoscope.datasets.store import dataset_dir, read_manifest
    from autoscope.loop.queue import write_queue
    from autoscope.loop.rounds import SelectSpec, select, slide_candidates
    from autoscope.slides.registry import USABLE
    from autoscope.stages.slides import detector_from

    project, stores, registry = _common(cfg)
    s = cfg.select
    cap = None if s.per_slide_cap is None else int(s.per_slide_cap)
    kinds = ("margin", "entropy", "bald")
    if str(s.uncertainty) not in kinds:
        raise UserError(f"select.uncertainty: '{s.uncertainty}' (use {', '.join(kinds)})")
    if str(s.uncertainty) == "bald" and not s.get("mc_dropout"):
        raise UserError("select.uncertainty=bald needs select.mc_dropout=<passes> (say 10)")
    spec = SelectSpec(
        int(s.budget),
        cap,
        str(s.uncertainty),
        float(s.pool_factor),
        bool(s.tta),
        int(s.get("mc_dropout") or 0),
        int(s.candidates_per_slide),
        float(s.min_tissue),
        int(cfg.seed),
    )
    name = cfg.dataset.get("name")
    ds = dataset_dir(stores, name) if name else None
    cols = ["slide_id", "x", "y", "source"]
    taken = read_manifest(ds, cols) if ds and ds.is_dir() else None
    if taken is None:
        import pandas as pd

        taken = pd.DataFrame(columns=cols)
    mpp, patch_px = (
        float(cfg.dataset.get("mpp") or cfg.project.target_mpp),
        int(cfg.dataset.get("patch_px") or 224),
    )
    model = _model(cfg)
    if s.get("images"):  # an image set's unlabelled pre-cut patches instead of slides
        from autoscope.loop.rounds import image_candidates

        cands, pixels = image_candidates(
            _image_paths(str(s.images), Path(stores.workspace)),
            patch_px,
            spec,
            _taken_images(taken, Path(stores.workspace)),
        )
        if cands.empty:
            raise UserError(f"select.images: {s.images} holds no unlabelled image")
    else:
        slides = registry[(registry["status"] == USABLE) & registry["mpp_x"].notna()]
        if slides.empty:
            raise UserError("select: no usable registered slides (run `autoscope slides ingest`)")
        mask = detector_from(cfg).mask
        cands, pixels = slide_candidates(slides, mpp, patch_px, spec, taken, mask)
        if cands.empty:
            raise UserError("select: the registered slides hold no unlabelled tissue")
    table, images, summary = select(cands, pixels, spec, project.class_names, model)
    out, n = _round_dir(cfg, "select", str(name or "slides"), ds if ds and ds.is_dir() else None)
    result = write_queue(
        out,
        table,
        images,
        kind="select",
        slides=registry,
        mpp=mpp,
        patch_px=patch_px,
        classes=project.class_dicts(),
        round_no=n,
        dataset=str(name) if name else None,
    )
    where = result.get("labels") or ", ".join(result["geojson"].values())
    print(f"regions to annotate: {where}", flush=True)
    return {**summary, "dir": str(out), "round": n}


def _image_paths(pattern: str, workspace: Path) -> list[Path]:
    """The images `select.images` names: a folder (searched recursively) or a glob."""
    import glob

    from autoscope.datasets.imports import IMAGE_SUFFIXES
    from autoscope.portable import resolve_path

    base = resolve_path(pattern, workspace)
    if base.is_dir():
        return [p for p in sorted(base.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    found = [Path(p) for p in sorted(glob.glob(str(base), recursive=True))]
    return [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]


def _taken_images(taken: Any, workspace: Path) -> set[str]:
    """Resolved paths of the pre-cut images a dataset holds (its image rows' `source`)."""
    from autoscope.portable import resolve_path

    rows = taken[taken["slide_id"].astype(str) == ""]["source"].dropna()
    return {str(resolve_path(str(p), workspace).resolve()) for p in rows}


def correct(cfg: Any) -> dict:
    """Import edited QuPath files as the next version of `cfg.dataset` (lineage recorded)."""
    from autoscope.datasets.store import dataset_dir, dataset_version, read_manifest
    from autoscope.loop.corrections import (
        lineage_record,
        next_name,
        patch_sides,
        plan_corrections,
    )
    from autoscope.loop.versions import write_version

    project, stores, registry = _common(cfg)
    files = [Path(str(f)) for f in cfg.corrections.files or []]
    if not files:
        raise UserError("loop correct: pass corrections.files=[edited.geojson,...]")
    for f in files:
        if not f.is_file():
            raise UserError(f"corrections.files: {f} not found")
    parent = dataset_dir(stores, cfg.dataset.get("name"))
    m = read_manifest(parent)
    stats = json.loads((parent / "stats.json").read_text())
    side = patch_sides(registry, float(stats["mpp"]), int(stats["patch_px"]))
    author = cfg.corrections.get("author")
    manifest, changes = plan_corrections(
        m, files, registry, project.class_names, None if author is None else str(author), side
    )
    if not changes:
        raise UserError(f"{', '.join(map(str, files))}: no corrections (nothing changed)")
    name, n = next_name(parent.name)
    done = parent.parent / name / "lineage.json"
    version = dataset_version(parent)
    if done.is_file():  # a re-run (say `loop run` after a failed training) reuses the import
        lin = json.loads(done.read_text())
        if lin.get("parent_version") == version and lin.get("files") == [f.name for f in files]:
            print(f"dataset {name}: these corrections are imported already", flush=True)
            return {
                "name": name,
                "dir": str(done.parent),
                "round": n,
                "version": dataset_version(done.parent),
                "patches": None,
                "corrections": sum(lin.get("by_kind", {}).values()),
            }
    lineage = lineage_record(parent.name, version, n, [f.name for f in files], files, changes)
    slides = {str(r.slide_id): (str(r.path), float(r.mpp_x)) for r in registry.itertuples()}
    result = write_version(parent, name, manifest, project.class_dicts(), slides, lineage)
    print(
        f"dataset {name} version {result['version']}: {result['dir']} "
        f"({lineage['by_kind']} by {lineage['by_author']})",
        flush=True,
    )
    return {**result, "round": n, "corrections": len(changes)}


def run_round(cfg: Any) -> dict:
    """One closed round from one command: corrections -> next dataset -> train -> archive.

    `autoscope loop run <recipe> corrections.files=[...]` imports the edited QuPath files as the
    next dataset version, trains the recipe's model on it and archives the run; the card's
    `lineage` names the dataset version, the round and the corrections.
    """
    from omegaconf import open_dict

    from autoscope.stages import archive, train

    made = correct(cfg)
    with open_dict(cfg):
        cfg.dataset.name = made["name"]
    trained = train.run(cfg)
    archived = archive.run(cfg)
    metric = str(cfg.metric)
    return {
        "dataset": made["name"],
        "dataset_version": made["version"],
        "round": made["round"],
        "corrections": made["corrections"],
        metric: (trained or {}).get(metric),
        "model_card": (archived or {}).get("card"),
    }
