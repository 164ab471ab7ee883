"""Whole-slide segmentation throughput: the engine vs a naive tile loop and vs its own bound.

Run: ``.venv/bin/python benchmarks/segment.py [--side-px 8192] [--reps 2] [--weights DIR]``
(CPU; ``--device cuda`` on a GPU host). ``--weights`` takes a trained model folder (a run or an
archived version of `demo_seg`): the seam figure means most for a trained net (a random one
reacts to every bit of context).

In one run, on the same tissue tiles (overlapping, ``--tile-px`` with ``--overlap-px``) of one
cached synthetic slide (``outputs/bench/``) and the project's U-Net (``conf/model/seg_unet.yaml``,
seeded random weights) at the segmentation demo's ``target_mpp``:

- ``naive``: OpenSlide ``read_region`` of one tile, the model on it, its probabilities blended
  into full-slide arrays with the same window (read one tile, run it, write it);
- ``engine``: ``autoscope.infer.segment.run_tiles`` (prefetching reader processes, batched calls
  of the frozen model, the rolling-band stitcher writing label and confidence memory maps);
- ``reader``: the prefetching readers alone; ``model``: the model alone on in-memory batches.

The first (untimed) pass checks that the engine's stitched probabilities equal the naive loop's
(``max_abs_diff``; the same pixels in, fp32) and measures seams: the largest probability
difference on the tile borders between the stitched map and one large-tile prediction of the
same region (``max_seam_diff``; ``max_region_diff`` over the region's interior). Ratios are
medians over repetitions: ``engine_vs_naive`` (target >= 2) and ``engine_vs_bound`` (the
slower of reader alone and model alone over the engine; target >= 0.8). Writes
``outputs/bench/segment.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT_DIR = ROOT / "outputs" / "bench"
TARGETS = {"engine_vs_naive": 2.0, "engine_vs_bound": 0.8}
MAX_ABS_DIFF = 1e-4  # engine (frozen trace, batches) vs naive loop (eager, one tile): fp32
REGION_PX = 512  # side of the single large-tile prediction the seams are measured against
MARGIN_PX = 64  # the large tile's own border (little context) is left out of the comparison
SEAM_PX = 4  # pixels either side of a tile border that count as the seam


def build_slide(side: int) -> Path:
    path = OUT_DIR / f"segment_synth_{side}.tif"
    if not path.is_file():
        from autoscope.slides.synth import make_synthetic_slide

        print(f"generating {path.name} ({side} x {side} px) ...", flush=True)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        make_synthetic_slide(path, seed=3, width_px=side, height_px=side)
    return path


def unet(weights: str | None = None) -> tuple[Any, Any, str]:
    """The default U-Net at the segmentation demo's resolution: seeded random weights, or a
    trained model's folder (`spec.json` + `model.pt`: a run or an archived version)."""
    import torch
    import yaml

    from autoscope.models.classifier import PatchClassifier
    from autoscope.project import ClassSpec

    conf = ROOT / "autoscope" / "conf"
    proj = yaml.safe_load((conf / "project" / "demo_seg.yaml").read_text())
    classes = tuple(ClassSpec(c["name"], c["color"]) for c in proj["classes"])
    if weights:
        folder = Path(weights)
        model = PatchClassifier.from_files(folder / "spec.json", folder / "model.pt")
        spec = json.loads((folder / "spec.json").read_text())
        rows = tuple(ClassSpec(c["name"], c.get("color", "#808080")) for c in spec["classes"])
        return model, (float(spec["input"]["mpp"]), rows), f"{folder} (trained)"
    mc = yaml.safe_load((conf / "model" / "seg_unet.yaml").read_text())
    torch.manual_seed(0)
    arch = {k: mc[k] for k in ("net", "mean", "std", "channels_last")}
    model = PatchClassifier.build(arch, len(proj["classes"])).eval()
    return model, (float(proj["target_mpp"]), classes), "conf/model/seg_unet.yaml (random init)"


class Capture:
    """A sink factory keeping the full stitched probabilities (the equality and seam checks)."""

    def __init__(self, num_classes: int) -> None:
        self.c, self.probs = num_classes, None

    def __call__(self, shape: tuple[int, int]) -> Any:
        self.probs = np.zeros((self.c, *shape), np.float32)

        def rows(p: np.ndarray, w: np.ndarray, top: int) -> None:
            self.probs[:, top : top + p.shape[1]] = p

        return rows


def naive(model: Any, path: Path, coords: np.ndarray, spec: Any, st: Any, shape: tuple) -> Any:
    """OpenSlide read_region, the model, blend into full arrays: one tile at a time."""
    import openslide
    import torch

    from autoscope.infer.seg_stitch import window

    slide = openslide.OpenSlide(str(path))
    px0 = spec.mpp / float(slide.properties["openslide.mpp-x"])
    level = slide.get_best_level_for_downsample(px0 + 1e-6)
    t, win = st.tile_px, window(st.tile_px, st.window)
    acc = np.zeros((len(spec.classes), *shape), np.float32)
    wsum = np.zeros(shape, np.float32)
    with torch.inference_mode():
        for x0, y0 in coords.tolist():
            rgb = np.array(slide.read_region((x0, y0), level, (t, t)).convert("RGB"))
            p = torch.softmax(model(torch.from_numpy(rgb[None])).float(), 1)[0].numpy()
            x, y = round(x0 / px0), round(y0 / px0)
            h, w = min(t, shape[0] - y), min(t, shape[1] - x)
            acc[:, y : y + h, x : x + w] += p[:, :h, :w] * win[:h, :w]
            wsum[y : y + h, x : x + w] += win[:h, :w]
    slide.close()
    return acc / np.maximum(wsum, 1e-12), wsum > 0


def engine(model: Any, path: Path, coords: np.ndarray, spec: Any, st: Any, sink: Any) -> Any:
    from autoscope.infer.segment import run_tiles

    return run_tiles(model, path, spec, st, sink, coords=coords)


def reader_only(path: Path, coords: np.ndarray, spec: Any, tile: int) -> int:
    from autoscope.slides.parallel import iter_batches

    batches = iter_batches(
        str(path), coords, spec.mpp, tile, spec.batch_size, spec.workers, spec.queue_depth()
    )
    return sum(len(c) for _, c in batches)


def model_only(ready: Any, n: int, tile: int, batch_size: int, device: Any) -> None:
    from autoscope.infer.segment import dense_probs

    batch = np.random.default_rng(0).integers(0, 256, (batch_size, tile, tile, 3), np.uint8)
    for start in range(0, n, batch_size):
        dense_probs(ready, batch[: min(batch_size, n - start)], device)


def seams(
    model: Any, path: Path, probs: np.ndarray, coords: np.ndarray, spec: Any, st: Any
) -> dict:
    """Stitched map vs one large-tile prediction of a region that spans tile borders."""
    import torch

    from autoscope.slides.reader import open_reader

    with open_reader(str(path)) as reader:
        px0 = spec.mpp / reader.mpp
        mid = coords[len(coords) // 2]
        x, y = round(mid[0] / px0), round(mid[1] / px0)
        x, y = min(x, probs.shape[2] - REGION_PX), min(y, probs.shape[1] - REGION_PX)
        rgb = reader.read_patch(round(x * px0), round(y * px0), spec.mpp, REGION_PX)
    with torch.inference_mode():
        big = torch.softmax(model(torch.from_numpy(rgb[None])).float(), 1)[0].numpy()
    m = MARGIN_PX
    diff = np.abs(big - probs[:, y : y + REGION_PX, x : x + REGION_PX]).max(0)[m:-m, m:-m]
    starts = np.unique(np.round(coords / px0).astype(int), axis=0)
    borders = set()
    for s in np.unique(starts[:, 0]):  # tile edges (left and right) crossing the region
        borders |= {("x", s), ("x", s + st.tile_px)}
    for s in np.unique(starts[:, 1]):
        borders |= {("y", s), ("y", s + st.tile_px)}
    seam = np.zeros_like(diff, bool)
    for axis, pos in borders:
        k = pos - (x if axis == "x" else y) - m
        lo, hi = max(0, k - SEAM_PX), min(diff.shape[0], k + SEAM_PX)
        if lo < hi:
            if axis == "x":
                seam[:, lo:hi] = True
            else:
                seam[lo:hi, :] = True
    return {
        "max_seam_diff": float(diff[seam].max()) if seam.any() else 0.0,
        "max_region_diff": float(diff.max()),
        "mean_region_diff": float(diff.mean()),
        "seam_pixels": int(seam.sum()),
    }


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side-px", type=int, default=8192, help="synthetic slide side (level 0)")
    p.add_argument("--reps", type=int, default=2, help="timed repetitions")
    p.add_argument("--tile-px", type=int, default=256, help="tile side at the model's mpp")
    p.add_argument("--overlap-px", type=int, default=32, help="overlap of neighbouring tiles")
    p.add_argument("--batch-size", type=int, default=16, help="tiles per model call")
    p.add_argument("--workers", type=int, default=2, help="reader processes")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--weights", default=None, help="a trained model folder (spec.json, model.pt)")
    a = p.parse_args(argv)
    import torch

    from autoscope.infer.batching import pick_device, prepare_model
    from autoscope.infer.segment import MapSink, SegSettings
    from autoscope.infer.source import open_slide, tissue_grid
    from autoscope.infer.spec import InferSpec

    path = build_slide(a.side_px)
    model, (mpp, classes), source = unet(a.weights)
    seg = {"tile_px": a.tile_px, "overlap_px": a.overlap_px}
    spec = InferSpec(mpp=mpp, patch_px=64, classes=classes, task="tissue_segmentation",
                     batch_size=a.batch_size, workers=a.workers, device=a.device,
                     progress=False, segment=seg)  # fmt: skip
    st = SegSettings.from_spec(spec)
    reader = open_slide(str(path))
    try:
        coords, _, _ = tissue_grid(reader, mpp=mpp, patch_px=st.tile_px, stride_px=st.step_px,
                                   tissue=None, cover_edges=True)  # fmt: skip
    finally:
        reader.close()
    n = len(coords)
    dev = pick_device(a.device)
    head = f"{path.name}: {n} tissue tiles of {st.tile_px} px (overlap {st.overlap_px})"
    print(f"{head} at {mpp} um/px; model {source}; {torch.get_num_threads()} threads", flush=True)
    capture = Capture(len(classes))
    run = engine(model, path, coords, spec, st, capture)  # untimed: warm-up and the checks
    ref, seen = naive(model, path, coords, spec, st, run.map_shape)
    max_diff = float(np.abs(capture.probs - ref)[:, seen].max())
    agree = float((capture.probs.argmax(0) == ref.argmax(0))[seen].mean())
    seam = seams(model, path, capture.probs, coords, spec, st)
    print(f"engine vs naive: max |dp| {max_diff:.2e}, labels agree {agree:.6f}; seams {seam}")
    ready = prepare_model(model, dev, st.tile_px if dev.type != "cpu" else None)  # as the engine
    times: dict[str, list[float]] = {k: [] for k in ("naive", "engine", "reader", "model")}
    for rep in range(a.reps):
        with tempfile.TemporaryDirectory() as tmp:
            maps = MapSink(Path(tmp), len(classes))
            times["engine"].append(
                timed(lambda m=maps: engine(model, path, coords, spec, st, m))[1]
            )
            del maps
        times["naive"].append(timed(lambda: naive(model, path, coords, spec, st, run.map_shape))[1])
        times["reader"].append(timed(lambda: reader_only(path, coords, spec, st.tile_px))[1])
        times["model"].append(timed(lambda: model_only(ready, n, st.tile_px, a.batch_size, dev))[1])
        print(f"rep {rep}: " + ", ".join(f"{k} {n / v[-1]:.1f} tiles/s" for k, v in times.items()),
              flush=True)  # fmt: skip
    vs_naive = [nv / e for nv, e in zip(times["naive"], times["engine"], strict=True)]
    bound = [max(r, m) for r, m in zip(times["reader"], times["model"], strict=True)]
    vs_bound = [b / e for b, e in zip(bound, times["engine"], strict=True)]
    res = {
        "slide": path.name,
        "tiles": n,
        "tile_px": st.tile_px,
        "overlap_px": st.overlap_px,
        "window": st.window,
        "mpp": mpp,
        "model": source,
        "device": str(dev),
        "batch_size": a.batch_size,
        "workers": a.workers,
        "torch_threads": torch.get_num_threads(),
        "tiles_per_s": {k: n / _median(v) for k, v in times.items()},
        "engine_vs_naive": _median(vs_naive),
        "engine_vs_bound": _median(vs_bound),
        "max_abs_diff": max_diff,
        "label_agreement": agree,
        **seam,
        "targets": TARGETS,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "segment.json"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out)
    print(json.dumps({k: v for k, v in res.items() if k != "targets"}, indent=1))
    print(f"wrote {out}")
    assert max_diff <= MAX_ABS_DIFF, f"engine differs from the naive loop by {max_diff:.2e}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
