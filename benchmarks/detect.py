"""Whole-slide cell detection: the engine vs a naive tile loop and vs its own bound, and its F1.

Run: ``.venv/bin/python benchmarks/detect.py [--side-px 3072] [--reps 2] [--train-minutes 3]``.

The detector is the demo's heatmap U-Net (``conf/model/det_unet.yaml``) trained by the pipeline's
own commands (``project create``, ``slides ingest``, ``dataset build``, ``train`` of the
``demo_cells`` recipe, csv logger) on the cell demo's 4 synthetic slides in a scratch workspace
``outputs/bench/detect_ws`` (cached: ``--retrain`` trains again). It is measured on its own
held-out synthetic slide (another seed, never trained on, ``outputs/bench/``), in one run:

- ``naive``: OpenSlide ``read_region`` of one tile, the model on it, its peaks, tile by tile;
- ``engine``: ``autoscope.infer.detect.run_tiles`` (prefetching reader processes, the model in
  cache-sized calls (`detect.heat_probs`), the same peaks, core ownership and merge);
- ``reader``: the prefetching readers alone; ``model``: the model and peak finding alone on the
  same tiles held in memory.

The untimed first pass checks that engine and naive loop find the same cells (same pixels in).
Ratios are medians over repetitions: ``engine_vs_naive`` (target >= 2) and ``engine_vs_bound``
(the slower of reader alone and model alone over the engine; target >= 0.8). ``f1`` (overall,
``_any`` class-agnostic, per class) matches the engine's cells to the slide's true nuclei
(Hungarian, within 3 µm). Writes ``outputs/bench/detect.json`` and the slide's outputs
(``outputs/bench/detect/<slide>/cells.geojson``: QuPath detections).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT_DIR = ROOT / "outputs" / "bench"
TARGETS = {"engine_vs_naive": 2.0, "engine_vs_bound": 0.8}
MATCH_UM = 3.0  # the matching radius
CLASSES = (("tumor", "#d62728"), ("lymphocyte", "#2ca02c"), ("fibroblast", "#ff7f0e"))


def held_out_slide(side: int) -> tuple[Path, np.ndarray]:
    """The cached held-out slide (seed 7) and its true cells (x, y, class index 0..2)."""
    import pandas as pd

    path = OUT_DIR / f"detect_synth_{side}.tif"
    if not path.is_file() or not path.with_suffix(".csv").is_file():
        from autoscope.slides.synth_cells import make_cell_slide

        print(f"generating {path.name} ({side} x {side} px) ...", flush=True)
        make_cell_slide(path, seed=7, width_px=side, height_px=side)
    t = pd.read_csv(path.with_suffix(".csv"))
    idx = t["class"].map({n: k for k, (n, _) in enumerate(CLASSES)}).to_numpy()
    return path, np.c_[t["x"].to_numpy(), t["y"].to_numpy(), idx].astype(np.float32)


def trained_model(minutes: float, retrain: bool) -> Path:
    """A run folder (spec.json, model.pt) of det_unet trained on the cell demo's slides."""
    ws = OUT_DIR / "detect_ws"
    runs = ws / "outputs" / "demo_cells" / "train" / "runs"
    done = sorted(runs.glob("*/model.pt")) if runs.is_dir() else []
    if done and not retrain:
        return done[-1].parent
    from autoscope.demo import generate_cells

    generate_cells(ws / "data" / "demo" / "raw" / "cells")
    cli, where = str(Path(sys.executable).parent / "autoscope"), f"paths.workspace={ws}"
    steps = (["project", "create"], ["slides", "ingest"], ["dataset", "build"], ["train"])
    for step in steps:
        extra = ["logger=csv", f"trainer.max_minutes={minutes}"] if step == ["train"] else []
        print(f"$ autoscope {' '.join(step)} demo_cells ...", flush=True)
        subprocess.run([cli, *step, "demo_cells", where, *extra], check=True, cwd=ws)
    return sorted(runs.glob("*/model.pt"))[-1].parent


def spec_and_settings(run: Path, tile_px: int, workers: int, batch_size: int) -> tuple:
    from autoscope.infer.det_settings import DetSettings
    from autoscope.infer.spec import InferSpec
    from autoscope.project import ClassSpec

    card = json.loads((run / "spec.json").read_text())
    spec = InferSpec(mpp=float(card["input"]["mpp"]), patch_px=int(card["input"]["patch_px"]),
                     classes=tuple(ClassSpec(n, c) for n, c in CLASSES), task="cell_detection",
                     workers=workers, batch_size=batch_size, progress=False, device="cpu",
                     detect={"tile_px": tile_px}, model_info={"dir": str(run)})  # fmt: skip
    return spec, DetSettings.from_spec(spec)


def naive(model: Any, path: Path, grid: np.ndarray, spec: Any, st: Any) -> np.ndarray:
    """The baseline: OpenSlide read_region, the model, peaks and ownership, one tile at a time."""
    import openslide
    import torch

    from autoscope.infer.detect import TileOwner, merge, tile_cells, to_level0

    slide = openslide.OpenSlide(str(path))
    mpp0 = float(slide.properties["openslide.mpp-x"])
    px0, t = spec.mpp / mpp0, st.tile_px
    owner, kept = TileOwner(grid, round(t * px0), round(st.step_px * px0)), []
    with torch.inference_mode():
        for x, y in grid.tolist():
            rgb = np.array(slide.read_region((x, y), 0, (t, t)).convert("RGB"))
            heat = torch.sigmoid(model(torch.from_numpy(rgb[None])).float())
            kept.append(owner.keep(x, y, to_level0(tile_cells(heat, st, spec.mpp)[0], x, y, px0)))
    slide.close()
    return merge(np.concatenate(kept), st.merge_um / mpp0)


def reader_only(path: Path, grid: np.ndarray, spec: Any, st: Any) -> list[np.ndarray]:
    """Drain the prefetching readers without a model; returns the batches (for `model_only`)."""
    from autoscope.slides.parallel import iter_batches

    it = iter_batches(str(path), grid, spec.mpp, st.tile_px, spec.batch_size, spec.workers,
                      spec.queue_depth())  # fmt: skip
    return [b.copy() for b, _ in it]


def model_only(model: Any, batches: list[np.ndarray], spec: Any, st: Any) -> int:
    """The model and the peak finding alone over in-memory batches; returns the cells found."""
    import torch

    from autoscope.infer.detect import heat_probs, ready_net, tile_cells

    dev = torch.device("cpu")
    net = ready_net(model, dev, st.tile_px)  # as the engine runs it
    return sum(len(c) for b in batches for c in tile_cells(heat_probs(net, b, dev), st, spec.mpp))


def f1_figures(found: np.ndarray, truth: np.ndarray, radius0: float) -> dict[str, float]:
    from autoscope.models.det_points import count_matches, scores

    counts = count_matches(found, truth, radius0, len(CLASSES))
    return {k: round(v, 4) for k, v in scores(counts, [n for n, _ in CLASSES], "").items()}


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side-px", type=int, default=3072, help="held-out slide side (level-0 px)")
    p.add_argument("--reps", type=int, default=2, help="timed repetitions (medians)")
    p.add_argument("--tile-px", type=int, default=256, help="engine and naive tile side")
    p.add_argument("--workers", type=int, default=1, help="engine reader processes")
    p.add_argument("--batch-size", type=int, default=8, help="engine tiles per model call")
    p.add_argument("--train-minutes", type=float, default=3.0, help="training budget")
    p.add_argument("--retrain", action="store_true", help="train the detector again")
    a = p.parse_args(argv)
    import torch

    from autoscope.infer.det_writers import write_outputs
    from autoscope.infer.detect import _open, run_tiles
    from autoscope.models.classifier import PatchClassifier

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    path, truth = held_out_slide(a.side_px)
    run = trained_model(a.train_minutes, a.retrain)
    model = PatchClassifier.from_files(run / "spec.json", run / "model.pt").eval()
    spec, st = spec_and_settings(run, a.tile_px, a.workers, a.batch_size)
    grid = _open(str(path), spec, st, None)[0]
    print(f"{path.name}: {len(grid)} tiles of {st.tile_px} px, model {run.name}", flush=True)
    found = run_tiles(model, path, spec, st)
    ref = naive(model, path, grid, spec, st)
    same = len(ref) == len(found.cells) and np.allclose(ref[:, :3], found.cells[:, :3], atol=1e-3)
    prob_diff = float(np.abs(ref[:, 3] - found.cells[:, 3]).max()) if same and len(ref) else None
    print(f"engine == naive: {same} ({len(found.cells)} vs {len(ref)} cells)", flush=True)
    shutil.rmtree(OUT_DIR / "detect" / path.stem, ignore_errors=True)
    write_outputs(found, OUT_DIR / "detect", spec.class_dicts, st, name=path.stem, root=ROOT)
    times: dict[str, list[float]] = {k: [] for k in ("naive", "engine", "reader", "model")}
    for rep in range(a.reps):
        times["naive"].append(timed(lambda: naive(model, path, grid, spec, st))[1])
        times["engine"].append(timed(lambda: run_tiles(model, path, spec, st))[1])
        batches, t_read = timed(lambda: reader_only(path, grid, spec, st))
        times["reader"].append(t_read)
        times["model"].append(timed(lambda b=batches: model_only(model, b, spec, st))[1])
        print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: float(statistics.median(v)) for k, v in times.items()}
    radius0 = MATCH_UM / found.slide_mpp
    res = {
        "slide": path.name, "tiles": len(grid), "tile_px": st.tile_px, "cells": len(found.cells),
        "true_cells": len(truth), "engine_equals_naive": bool(same), "prob_max_abs_diff": prob_diff,
        "seconds": med, "tiles_per_s": {k: len(grid) / v for k, v in med.items()},
        "engine_vs_naive": med["naive"] / med["engine"],
        "engine_vs_bound": max(med["reader"], med["model"]) / med["engine"],
        "f1": f1_figures(found.cells, truth, radius0)["f1"],
        "held_out": f1_figures(found.cells, truth, radius0), "match_um": MATCH_UM,
        "targets": TARGETS, "model_run": run.name, "cpu_count": os.cpu_count(),
    }  # fmt: skip
    out = OUT_DIR / "detect.json"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out)
    print(f"engine_vs_naive {res['engine_vs_naive']:.2f} (target >= 2), engine_vs_bound "
          f"{res['engine_vs_bound']:.2f} (target >= 0.8), held-out f1 {res['f1']:.3f}: "
          f"{json.dumps(res['held_out'])}\nwrote {out}")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
