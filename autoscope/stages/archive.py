"""`autoscope archive` and `autoscope models list`: keep a reviewed run as a versioned model."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from autoscope.errors import UserError


def _pick_run(client: Any, exp_id: str, cfg: Any) -> Any:
    from autoscope.archive import runs, sources

    ref = str(cfg.run)
    if ref != "best":
        return runs.get_run(client, exp_id, ref)
    found = runs.candidate_runs(client, exp_id, cfg.metric, cfg.metric_mode)
    train_dir = Path(cfg.paths.outputs) / "train" / "runs"
    for run in found:
        rid = run.info.run_id
        if (train_dir / rid / "model.pt").is_file() or any(
            Path(a).name == "model.pt" for a in sources.artifact_files(client, rid)
        ):
            return run
    raise UserError(
        f"no finished run with metric '{cfg.metric}' and weights in project "
        f"'{cfg.project.name}': run `autoscope train` first"
    )


def _check_weights(path: Path) -> int:
    """Load the state dict safely; return its parameter count."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's run
        raise UserError(f"{path}: not a loadable state dict ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a state dict of tensors")
    return int(sum(v.numel() for v in state.values()))


def _review_heatmap(cfg: Any, run: Any, staging: Path, review: dict[str, str]) -> dict | None:
    """Add the heatmap of a validation slide to `review`; a failure is reported, not fatal."""
    from autoscope.archive import heatmap

    slide = None
    try:
        slide = heatmap.pick_review_slide(cfg, run)
        if slide is None:
            return None
        review.update(heatmap.draw_heatmap(staging, slide))
        return {"path": slide}
    except Exception as e:  # noqa: BLE001 - the review picture is optional; the card says why
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"archive: no review heatmap for {slide or 'archive.review_slide'}: {msg}")
        return {"path": slide, "error": msg}


def _stage_version(cfg: Any, client: Any, run: Any, name: str, version: int, staging: Path) -> dict:
    """Fill `staging` with weights, spec, review pictures and the card; return the card."""
    import json

    from autoscope.archive import card, sources

    rid = run.info.run_id
    local = Path(cfg.paths.outputs) / "train" / "runs" / rid
    files = sources.fetch_run_files(client, cfg.paths.mlflow_uri, rid, local, staging / "_in")
    shutil.move(files.pop("model.pt"), staging / "model.pt")
    shutil.move(files.pop("spec.json"), staging / "spec.json")
    review: dict[str, str] = {}
    (staging / "review").mkdir()
    for png in files.values():
        key = sources.review_name(png.name)
        if key not in review:
            shutil.move(png, staging / "review" / f"{key}.png")
            review[key] = f"review/{key}.png"
    shutil.rmtree(staging / "_in")
    params = _check_weights(staging / "model.pt")
    spec = json.loads((staging / "spec.json").read_text())
    review_slide = _review_heatmap(cfg, run, staging, review)
    tag = f"{name}:v{version}"
    meta = card.build_card(
        name=name,
        version=version,
        spec=spec,
        run=run,
        project={k: cfg.project.get(k) for k in ("name", "product", "organ", "task")},
        bentoml_tag=tag,
        registry={"name": name, "version": version, "alias": cfg.archive.alias},
        review=review,
    )
    meta["parameters"] = params
    meta["review_slide"] = review_slide
    card.write_json(staging / card.CARD, meta)
    return meta


def run(cfg: Any) -> dict:
    """Archive `run` (default: the best run): card, MLflow registry, BentoML store.

    Archiving a run that is already archived changes nothing but the alias.
    """
    from autoscope.archive import bento_store, card, registry, runs

    client = runs.mlflow_client(cfg.paths.mlflow_uri)
    exp_id = runs.experiment_id(client, cfg.project.name)
    run_ = _pick_run(client, exp_id, cfg)
    rid = run_.info.run_id
    thr = cfg.archive.thresholds
    runs.check_thresholds(run_.data.metrics, thr.get("min") or {}, thr.get("max") or {}, rid)
    name = registry.registry_name(cfg.project.name, cfg.archive.model_name)
    models_dir = Path(cfg.paths.outputs) / "models" / str(cfg.archive.model_name)
    bento_store.use_bentoml_home(cfg.paths.bentoml_home)
    version = registry.version_of_run(client, name, rid)
    created = version is None
    if version is None:
        version = registry.new_version(
            client, name, rid, run_.info.artifact_uri, f"{cfg.project.product}: {cfg.project.task}"
        )
    final = models_dir / f"v{version}"
    if not (final / card.CARD).is_file():
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".v{version}."))
        try:
            _stage_version(cfg, client, run_, name, version, staging)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    meta = card.read_card(final)
    labels = {"project": cfg.project.name, "run_id": rid}
    tag = bento_store.save_model(name, f"v{version}", final, labels, {"card": card.CARD})
    registry.finish_version(
        client,
        name,
        version,
        cfg.archive.alias,
        {"bentoml_tag": tag, "card": str(final / card.CARD)},
    )
    return {
        "model": name,
        "version": version,
        "run_id": rid,
        "alias": cfg.archive.alias,
        cfg.metric: meta["metrics"].get(cfg.metric),
        "bentoml_tag": tag,
        "card": str(final / card.CARD),
        "new": created,
    }


def models_view(cfg: Any, flags: list[str]) -> None:
    """Print a table of the project's archived models (`autoscope models list <recipe>`)."""
    from autoscope.archive import card, registry, runs

    parser = argparse.ArgumentParser(prog="autoscope models list", add_help=False)
    parser.add_argument("--name", default=None, help="only this model_name")
    args, unknown = parser.parse_known_args(flags)
    if unknown:
        raise UserError(f"models list: unexpected argument '{unknown[0]}' (known: --name NAME)")
    cards = card.archived_cards(Path(cfg.paths.outputs) / "models")
    if args.name:
        cards = [c for c in cards if c["name"].endswith(f"-{args.name}")]
    if not cards:
        print(f"no archived models in project '{cfg.project.name}' (run `autoscope archive`)")
        return
    client = runs.mlflow_client(cfg.paths.mlflow_uri)
    aliases = {n: registry.aliases_of(client, n) for n in {c["name"] for c in cards}}
    cols = ["model", "version", "aliases", cfg.metric, "run", "dataset", "bentoml_tag", "date"]
    rows = []
    for c in cards:
        value = c["metrics"].get(cfg.metric)
        rows.append(
            [
                c["name"],
                f"v{c['version']}",
                ",".join(aliases[c["name"]].get(int(c["version"]), [])),
                "" if value is None else f"{value:.4f}",
                c["run_id"][:12],
                str(c.get("dataset_version") or "")[:12],
                c["bentoml_tag"],
                c["date"],
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=False)]
    for line in [cols, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)).rstrip())
