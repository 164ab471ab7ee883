"""`autoscope infer`: run an archived model over slides (heatmaps, GeoJSON, summaries)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from autoscope.errors import UserError


def run(cfg: Any) -> dict[str, Any]:
    """Resolve the model and slides from the recipe, run this job's shard, report the outputs."""
    from autoscope.atomic import sweep_stale
    from autoscope.config import stores_spec, to_dict
    from autoscope.infer import models, runner
    from autoscope.infer.spec import InferSpec
    from autoscope.slides.registry import load_registry

    settings = to_dict(cfg.infer)
    model_dir = models.resolve_model_dir(
        Path(cfg.paths.outputs) / "models",
        settings["model"]["name"],
        settings["model"]["version"],
        mlflow_uri=str(cfg.paths.mlflow_uri),
        registry_name=f"{cfg.project.name}-{settings['model']['name']}",
    )
    _, card = models.load_model(model_dir)
    spec = InferSpec.from_card(card, settings)  # checks the settings before any slide runs
    jobs = runner.select_slides(
        str(settings["slides"]), load_registry(stores_spec(cfg)), list(cfg.slides.extensions)
    )
    shards = int(settings.get("shards", 1))
    mine = runner.shard_jobs(jobs, int(settings.get("shard", 0)), shards)
    loader = partial(models.load_engine, str(model_dir), settings)
    out_dir = Path(settings["out_root"]) / model_dir.parent.name / model_dir.name
    part = f" (shard {settings.get('shard', 0)} of {shards}: {len(mine)} of {len(jobs)})"
    print(
        f"infer: {len(mine)} slide(s){part if shards > 1 else ''}, model "
        f"{model_dir.parent.name} {model_dir.name} -> {out_dir}"
    )
    sweep_stale(out_dir)  # a killed job's `.<slide>.tmp-<pid>...` folders
    results = runner.run_slides(
        mine,
        out_dir,
        loader,
        instances=spec.instances,
        resume=spec.resume,
        root=str(cfg.paths.workspace),
    )
    count = {s: sum(r["status"] == s for r in results) for s in ("ok", "skipped", "busy")}
    failed = [r for r in results if r["status"] == "failed"]
    from autoscope.tasks import OUTPUTS, family

    print(
        f"{OUTPUTS[family(spec.task)]}, summaries (summary.json) per slide in: {out_dir}/<slide>/"
    )
    if failed:
        for r in failed:
            print(f"  failed: {r['name']} ({r['path']}): {r['error']}")
        raise UserError(
            f"infer: {len(failed)} of {len(results)} slide(s) failed, {count['ok']} done, "
            f"{count['skipped']} skipped (see above); outputs in {out_dir}"
        )
    return {
        "slides": len(results),
        "done": count["ok"],
        "skipped": count["skipped"],
        "busy": count["busy"],
        "failed": 0,
        "out_dir": str(out_dir),
    }
