"""Training loader throughput: patches from the shards through the training augmentation.

Run: ``.venv/bin/python benchmarks/loader.py [--patch-px 128] [--mpp 0.5] [--reps 5]``.

In a temporary workspace it writes a synthetic slide, ingests it and builds a dataset from its
GeoJSON (timed: build seconds per 1,000 patches), then times, interleaved per repetition, on the
same random batches of patch indices:

- ``shards``: what training does per batch: gather the batch from the memory-mapped shard and
  run ``autoscope.datasets.augment.augment_batch`` (flips/rot90 + colour jitter + normalisation)
  -> model-ready float tensors;
- ``naive``: a torch ``Dataset`` whose ``__getitem__`` opens the slide with OpenSlide, calls
  ``read_region`` for the patch and converts it to RGB, batched by a ``DataLoader``, then the
  same augmentation;
- ``limit``: a bare read of the same stored bytes (the batch gathered from the shard, no
  augmentation): the ceiling of any loader of these shards (they are not compressed);
- ``shards_read``: the shard loader's read path alone (gather + tensor wrap, no augmentation).

Prints patches/s and the median per-repetition ratios; writes ``outputs/bench/loader.json``.

The shards are raw uint8, so the limit is a memory copy, while the augmentation writes float32
(4x the bytes) after colour maths: on a CPU ``shards_vs_limit`` stays far below 0.7 however the
augmentation is written; ``shards_read_vs_limit`` is the loader's own overhead. The augmentation
also runs on a GPU batch (same results), which takes it off the loader's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "outputs" / "bench" / "loader.json"
TARGETS = {"shards_vs_naive": 3.0, "shards_vs_limit": 0.7}
MEAN, STD = [0.7, 0.55, 0.7], [0.15, 0.15, 0.1]  # typical H&E normalisation (any values work)


def build(tmp: Path, patch_px: int, mpp: float, side_px: int) -> tuple[Path, dict, Path]:
    """Synthetic slide -> registry -> dataset; returns (dataset dir, build summary, slide path)."""
    sys.path.insert(0, str(ROOT))
    from autoscope.config import compose
    from autoscope.datasets.build import build_dataset
    from autoscope.slides.synth import make_synthetic_slide
    from autoscope.stages.slides import ingest

    raw = tmp / "data" / "demo" / "raw" / "synthetic"
    slide = make_synthetic_slide(raw / "slide_000.tif", seed=7, width_px=side_px, height_px=side_px)
    base = [f"paths.workspace={tmp}", f"slides.sources=[{raw}]", "slides.metadata=null"]
    ingest(compose("demo", base, stage="slides_ingest"))
    ds = [
        "dataset=demo_tissue",
        "dataset.name=bench",
        f"dataset.patch_px={patch_px}",
        f"dataset.mpp={mpp}",
        f"dataset.stride_px={patch_px // 2}",
        "dataset.max_patches_per_slide=null",
        "dataset.min_overlap=0.5",
        "dataset.split.fractions={train: 1.0, val: 0.0, test: 0.0}",
    ]
    summary = build_dataset(compose("demo", base + ds, stage="dataset_build"))
    return Path(summary["dir"]), summary, slide.path


def make_modes(ds_dir: Path, slide_path: Path, batch: int, mpp: float, seed: int):
    """Timed callables (each delivers one batch and returns its size) and their batch counts."""
    import openslide
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader, Dataset

    from autoscope.datasets.augment import augment_batch
    from autoscope.datasets.store import open_shards, read_manifest

    m = read_manifest(ds_dir)
    shard = open_shards(ds_dir)[m["shard"].iloc[0]]
    labels = m["label_idx"].to_numpy()
    n, patch_px = len(m), int(m["patch_px"].iloc[0])
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    level = int(m["pyramid_level"].iloc[0])
    assert abs(float(m["mpp"].iloc[0]) - mpp) < 1e-9

    def next_idx() -> np.ndarray:
        return np.sort(rng.choice(n, batch, replace=False))

    def run_limit() -> int:
        return len(shard[next_idx()])

    def run_shards_read() -> int:
        idx = next_idx()
        x, y = torch.from_numpy(shard[idx]), torch.from_numpy(labels[idx])
        return len(x) + 0 * len(y)

    def run_shards() -> int:
        idx = next_idx()
        x = augment_batch(torch.from_numpy(shard[idx]), gen, mean=MEAN, std=STD)
        y = torch.from_numpy(labels[idx])
        return int(x.shape[0]) + 0 * len(y)

    class NaiveSlideDataset(Dataset):
        """Opens the slide and reads one patch with OpenSlide per item."""

        def __init__(self, rows: pd.DataFrame) -> None:
            self.rows = rows.reset_index(drop=True)

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int):
            r = self.rows.iloc[i]
            s = openslide.OpenSlide(str(slide_path))
            try:
                img = s.read_region((int(r.x), int(r.y)), level, (patch_px, patch_px))
                arr = np.asarray(img.convert("RGB"))
            finally:
                s.close()
            return torch.from_numpy(arr.copy()), int(r.label_idx)

    naive = DataLoader(
        NaiveSlideDataset(m),
        batch_size=batch,
        shuffle=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )
    naive_iter = iter(naive)

    def run_naive() -> int:
        nonlocal naive_iter
        try:
            x, y = next(naive_iter)
        except StopIteration:
            naive_iter = iter(naive)
            x, y = next(naive_iter)
        return int(augment_batch(x, gen, mean=MEAN, std=STD).shape[0]) + 0 * len(y)

    return {
        "limit": run_limit,
        "shards_read": run_shards_read,
        "shards": run_shards,
        "naive": run_naive,
    }


def rate(fn: Callable[[], int], min_seconds: float, min_batches: int) -> float:
    """Patches/s of a callable run for at least min_seconds and min_batches (after one warm-up)."""
    fn()
    count, t0, k = 0, time.perf_counter(), 0
    while k < min_batches or time.perf_counter() - t0 < min_seconds:
        count += fn()
        k += 1
    return count / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write outputs/bench/loader.json."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--patch-px", type=int, default=128, help="patch side (px)")
    p.add_argument("--mpp", type=float, default=0.5, help="patch mpp (0.5: the slide's level 0)")
    p.add_argument("--side-px", type=int, default=6144, help="synthetic slide side (level-0 px)")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    p.add_argument("--seconds", type=float, default=0.6, help="minimal time per mode and rep")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (one core)")
    p.add_argument("--out", type=Path, default=OUT, help="result JSON")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    with tempfile.TemporaryDirectory(prefix="autoscope-loader-") as tmp:
        ds_dir, summary, slide_path = build(Path(tmp), a.patch_px, a.mpp, a.side_px)
        modes = make_modes(ds_dir, slide_path, a.batch, a.mpp, seed=0)
        rates: dict[str, list[float]] = {k: [] for k in modes}
        for _ in range(a.reps):
            for name, fn in modes.items():
                rates[name].append(rate(fn, a.seconds, 2 if name == "naive" else 10))

    def ratio(num: str, den: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[num], rates[den], strict=True))

    result = {
        "patches_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "shards_vs_naive": round(ratio("shards", "naive"), 2),
        "shards_vs_limit": round(ratio("shards", "limit"), 3),
        "shards_read_vs_limit": round(ratio("shards_read", "limit"), 3),
        "targets": TARGETS,
        "build": {
            "patches": summary["patches"],
            "seconds": summary["seconds"],
            "seconds_per_1000": summary["seconds_per_1000"],
        },
        "settings": {
            "patch_px": a.patch_px,
            "mpp": a.mpp,
            "batch": a.batch,
            "reps": a.reps,
            "side_px": a.side_px,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
    }
    result["met"] = {k: result[k] >= v for k, v in TARGETS.items()}
    result["note"] = (
        "limit = gather of the stored uint8 bytes (a memory copy); shards adds the float32 "
        "augmentation (4x the bytes + colour maths), so shards_vs_limit measures augmentation "
        "cost; shards_read_vs_limit is the loader's read path alone"
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = a.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, a.out)
    pps = result["patches_per_s"]
    print(
        f"dataset build: {summary['patches']} patches in {summary['seconds']} s "
        f"({summary['seconds_per_1000']} s per 1,000)"
    )
    for k in ("shards", "naive", "limit", "shards_read"):
        print(f"  {k:<12} {pps[k]:>10.0f} patches/s")
    for k in ("shards_vs_naive", "shards_vs_limit", "shards_read_vs_limit"):
        target = TARGETS.get(k)
        note = (
            f" (target >= {target}: {'met' if result[k] >= target else 'NOT met'})"
            if target
            else ""
        )
        print(f"  {k:<21} {result[k]}{note}")
    print(f"written {a.out}")
    return result


if __name__ == "__main__":
    main()
