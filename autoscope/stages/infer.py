"""`autoscope infer`: run an archived model over slides (heatmaps, GeoJSON, summaries)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from autoscope.errors import UserError

PREFETCH_SHARE = 0.5  # share of `infer.memory` the read-ahead queue may hold


def _queue_depth(memory: int | None, batch_size: int, patch_px: int, workers: int) -> int:
    """Batches read ahead: 2 per worker, fewer when `infer.memory` cannot hold them."""
    want = max(2, 2 * workers)
    if memory is None:
        return want
    fits = int(memory * PREFETCH_SHARE // (batch_size * patch_px * patch_px * 3))
    if fits < 2:
        raise UserError(
            f"infer.memory={memory / 2**20:.0f}MB holds fewer than 2 batches of {batch_size} "
            f"{patch_px}px tiles: raise infer.memory or lower infer.batch_size"
        )
    return min(want, fits)


def run(cfg: Any) -> dict[str, Any]:
    """Resolve the model and slides from the recipe, run them, report where outputs are."""
    from omegaconf import OmegaConf

    from autoscope.infer import models, runner
    from autoscope.slides.registry import load_registry

    ic = cfg.infer
    project = str(cfg.project.name)
    model_dir = models.resolve_model_dir(
        Path(cfg.paths.outputs) / "models",
        ic.model.name,
        ic.model.version,
        mlflow_uri=cfg.paths.mlflow_uri,
        registry_name=f"{project}-{ic.model.name}",
    )
    card = models.read_card(model_dir)
    patch_px = int(card["input"]["patch_px"])
    jobs = runner.select_slides(str(ic.slides), load_registry(cfg), list(cfg.slides.extensions))
    instances = max(1, int(ic.instances))
    kwargs = {
        "stride_px": ic.stride_px,
        "batch_size": int(ic.batch_size),
        "workers": int(ic.workers),
        "device": str(ic.device),
        "decode": str(ic.decode),
        "progress": bool(ic.progress) and instances == 1,
        "min_tissue": float(ic.min_tissue),
        "queue_depth": _queue_depth(
            runner.parse_bytes(ic.memory), int(ic.batch_size), patch_px, int(ic.workers)
        ),
    }
    tissue = OmegaConf.to_container(cfg.tissue, resolve=True)
    loader = partial(models.load_engine, str(model_dir), kwargs, tissue)
    out_dir = Path(ic.out_root) / model_dir.parent.name / model_dir.name
    print(
        f"infer: {len(jobs)} slide(s), model {model_dir.parent.name} {model_dir.name} -> {out_dir}"
    )
    results = runner.run_slides(jobs, out_dir, loader, instances=instances, resume=bool(ic.resume))
    failed = [r for r in results if r["status"] == "failed"]
    done = sum(r["status"] == "ok" for r in results)
    skipped = sum(r["status"] == "skipped" for r in results)
    print(
        f"heatmaps (heatmap.png, heatmap.tif), GeoJSON (regions.geojson), summaries "
        f"(summary.json) per slide in: {out_dir}/<slide>/"
    )
    if failed:
        for r in failed:
            print(f"  failed: {r['name']} ({r['path']}): {r['error']}")
        raise UserError(
            f"infer: {len(failed)} of {len(results)} slide(s) failed, {done} done, "
            f"{skipped} skipped (see above); outputs in {out_dir}"
        )
    return {
        "slides": len(results),
        "done": done,
        "skipped": skipped,
        "failed": 0,
        "out_dir": str(out_dir),
    }
