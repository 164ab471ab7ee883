"""Whole-slide inference throughput: the engine vs a naive loop, and vs its own bound.

Run: ``.venv/bin/python benchmarks/infer.py [--preset quick|full] [--reps 3]`` (CPU), or on a GPU
host ``python benchmarks/infer.py --device cuda --arch resnet50``.

CPU mode, in one run, interleaved per repetition, on the same tissue tiles of one cached synthetic
slide (``outputs/bench/``) and the project's small CNN (a ``PatchClassifier`` built from
``conf/model/small_cnn.yaml`` at the project's ``target_mpp``):

- ``naive``: ``OpenSlide.read_region`` then the model, one tile at a time (the baseline);
- ``engine``: ``autoscope.infer.engine.predict_slide`` (tissue grid, prefetching reader
  processes, batched model calls), start-up included;
- ``reader``: ``iter_batches`` alone; ``model``: the model alone on in-memory batches.

It asserts the engine's probabilities equal the naive loop's (max abs diff <= 1e-5, fp32), prints
tiles/s and the median ratios ``engine_vs_naive`` (target >= 2) and ``engine_vs_bound`` (engine
over min(reader, model), target >= 0.8), and writes ``outputs/bench/infer.json``.

CUDA mode measures the share of wall time the GPU spends in the model (CUDA events; target
>= 90 %) for a ResNet-50 (defined here: no torchvision) under bf16 autocast, plus model-only and
reader-only throughput. It imports only the engine and its few dependencies (torch, numpy,
openslide, tifffile/imagecodecs, PIL): no hydra, mlflow, bentoml, lightning or pandas. A GPU host
without openslide-python, openslide-bin or imagecodecs takes their wheels (``pip download
--no-deps --only-binary=:all: --python-version 3.12 ...``, then ``pip install --no-index --no-deps
--target DIR`` there and ``PYTHONPATH=DIR``); the synthetic slide is generated there in seconds.
It writes ``outputs/bench/infer_cuda.json``. Heavy imports stay inside functions: reader workers
re-import this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT_DIR = ROOT / "outputs" / "bench"
PRESETS = {  # synthetic slide side (level-0 px at 0.5 um/px) and timed repetitions
    "quick": {"side_px": 8192, "reps": 3},
    "full": {"side_px": 16384, "reps": 3},
}
TARGETS = {"engine_vs_naive": 2.0, "engine_vs_bound": 0.8, "gpu_model_busy": 0.9}
MAX_ABS_DIFF = 1e-5  # engine vs naive loop on the same pixels, fp32 on the CPU
FORBIDDEN = ("hydra", "omegaconf", "mlflow", "bentoml", "lightning", "pandas", "dvc", "optuna")


def build_slide(side: int) -> Path:
    """The cached synthetic slide (generated on first use)."""
    path = OUT_DIR / f"infer_synth_{side}.tif"
    if not path.is_file():
        from autoscope.slides.synth import make_synthetic_slide

        print(f"generating {path.name} ({side} x {side} px) ...", flush=True)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        make_synthetic_slide(path, seed=0, width_px=side, height_px=side)
    return path


def small_cnn() -> tuple[Any, float, int, str]:
    """The project's small CNN (`conf/model/small_cnn.yaml`) at the demo project's target mpp."""
    import yaml

    from autoscope.models.classifier import PatchClassifier

    mc = yaml.safe_load((ROOT / "conf" / "model" / "small_cnn.yaml").read_text())
    proj = yaml.safe_load((ROOT / "conf" / "project" / "demo.yaml").read_text())
    arch = {k: mc[k] for k in ("net", "mean", "std", "channels_last")}
    model = PatchClassifier.build(arch, len(proj["classes"])).eval()
    return model, float(proj["target_mpp"]), int(mc["input_px"]), "conf/model/small_cnn.yaml"


def resnet50(num_classes: int = 2) -> Any:
    """ResNet-50 (v1.5, torchvision's layout) behind uint8 NHWC input normalised on the device."""
    import torch
    from torch import nn

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> list:
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        return layers + ([nn.ReLU(inplace=True)] if relu else [])

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, mid: int, stride: int) -> None:
            super().__init__()
            body = conv_bn(cin, mid, 1) + conv_bn(mid, mid, 3, stride)
            self.body = nn.Sequential(*body, *conv_bn(mid, mid * 4, 1, relu=False))
            same = stride == 1 and cin == mid * 4
            self.down = None if same else nn.Sequential(*conv_bn(cin, mid * 4, 1, stride, False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers, cin = [*conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)], 64
            for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                for i in range(n):
                    layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
                    cin = mid * 4
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(2048, num_classes)
            mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # uint8 [N, H, W, 3] on the device
            x = x.permute(0, 3, 1, 2).float().sub_(self.mean).div_(self.std)
            return self.head(self.features(x.contiguous(memory_format=torch.channels_last)))

    torch.manual_seed(0)
    return Net().eval()


def naive(model: Any, path: Path, coords: np.ndarray, level: int, patch_px: int) -> np.ndarray:
    """The baseline: OpenSlide read_region + convert, then the model, tile by tile."""
    import openslide
    import torch

    slide = openslide.OpenSlide(str(path))
    out = np.empty((len(coords), 0), np.float32)
    rows = []
    with torch.inference_mode():
        for x, y in coords.tolist():
            rgb = np.array(slide.read_region((x, y), level, (patch_px, patch_px)).convert("RGB"))
            rows.append(torch.softmax(model(torch.from_numpy(rgb[None])).float(), 1)[0].numpy())
    slide.close()
    return np.stack(rows) if rows else out


def reader_only(path: Path, coords: np.ndarray, mpp: float, patch_px: int, kw: dict) -> int:
    """Drain the prefetching readers without a model; returns the tiles read."""
    from autoscope.infer.source import iter_tiles

    return sum(len(c) for _, c in iter_tiles(str(path), coords, mpp=mpp, patch_px=patch_px, **kw))


def model_only(model: Any, n: int, patch_px: int, batch_size: int, device: Any) -> None:
    """The model alone over `n` tiles of in-memory uint8 batches (host -> device included)."""
    import torch

    from autoscope.infer.batching import run_model

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (batch_size, patch_px, patch_px, 3), dtype=np.uint8)
    coords = np.zeros((batch_size, 2), np.int64)

    def batches():
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            yield batch[:m], coords[:m]

    run_model(model, batches(), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t


def tissue_coords(path: Path, mpp: float, patch_px: int) -> np.ndarray:
    from autoscope.infer.source import open_slide, tissue_grid

    reader = open_slide(str(path))
    try:
        coords, _, _ = tissue_grid(
            reader, mpp=mpp, patch_px=patch_px, stride_px=patch_px, tissue=None
        )
        level, _ = reader.best_level(mpp)
    finally:
        reader.close()
    return coords, level


def write_json(data: dict, name: str = "infer.json") -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def cpu_main(args: argparse.Namespace) -> dict:
    """Naive loop vs engine vs its bound on the CPU, interleaved repetitions."""
    import torch

    from autoscope.infer.engine import pick_device, predict_slide

    path = build_slide(PRESETS[args.preset]["side_px"])
    model, mpp, patch_px, source = small_cnn()
    coords, level = tissue_coords(path, mpp, patch_px)
    n = len(coords)
    kw = {"batch_size": args.batch_size, "workers": args.workers, "queue_depth": 2 * args.workers}
    dev = pick_device("cpu")
    print(
        f"{path.name}: {n} tissue tiles of {patch_px} px at {mpp} um/px (level {level}); "
        f"model {source}; torch threads {torch.get_num_threads()}",
        flush=True,
    )
    reader_only(path, coords[: 4 * args.batch_size], mpp, patch_px, kw)  # warm-up: workers, cache
    model_only(model, 2 * args.batch_size, patch_px, args.batch_size, dev)
    pick = np.unique(np.linspace(0, n - 1, min(n, args.naive_tiles)).astype(int))
    counts = {"naive": len(pick), "engine": n, "reader": n, "model": n}
    times: dict[str, list[float]] = {k: [] for k in counts}
    max_diff = 0.0
    for rep in range(args.reps or PRESETS[args.preset]["reps"]):
        ref, t = timed(lambda: naive(model, path, coords[pick], level, patch_px))
        times["naive"].append(t)
        pred, t = timed(
            lambda: predict_slide(
                model,
                path,
                mpp=mpp,
                patch_px=patch_px,
                coords=coords,
                progress=False,
                device="cpu",
                **kw,
            )
        )
        times["engine"].append(t)
        times["reader"].append(timed(lambda: reader_only(path, coords, mpp, patch_px, kw))[1])
        times["model"].append(
            timed(lambda: model_only(model, n, patch_px, kw["batch_size"], dev))[1]
        )
        assert np.array_equal(pred.coords, coords), "engine changed the tile order"
        max_diff = max(max_diff, float(np.abs(pred.probs[pick] - ref).max()))
        rates = {k: counts[k] / v[-1] for k, v in times.items()}
        print(
            f"rep {rep}: " + ", ".join(f"{k} {v:.0f} tiles/s" for k, v in rates.items()),
            flush=True,
        )
    assert max_diff <= MAX_ABS_DIFF, f"engine differs from the naive loop by {max_diff:.2e}"
    vs_naive = [  # tiles/s over tiles/s: the naive loop runs on an evenly spread subset
        (n / e) / (len(pick) / a) for a, e in zip(times["naive"], times["engine"], strict=True)
    ]
    vs_bound = [
        max(r, m) / e
        for r, m, e in zip(times["reader"], times["model"], times["engine"], strict=True)
    ]
    return {
        "mode": "cpu",
        "slide": str(path),
        "tiles": n,
        "naive_tiles": len(pick),
        "patch_px": patch_px,
        "mpp": mpp,
        "model": source,
        "batch_size": kw["batch_size"],
        "workers": kw["workers"],
        "torch_threads": torch.get_num_threads(),
        "tiles_per_s": {k: counts[k] / _median(v) for k, v in times.items()},
        "engine_vs_naive": _median(vs_naive),
        "engine_vs_bound": _median(vs_bound),
        "max_abs_diff": max_diff,
        "targets": {k: TARGETS[k] for k in TARGETS if "gpu" not in k},
    }


def _shm_depth(workers: int, batch_bytes: int) -> int:
    """Read-ahead batches: 2 per worker, fewer if /dev/shm (the workers' ring) is small."""
    import shutil

    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return 2 * workers
    return max(2, min(2 * workers, int(free * 0.5 // batch_bytes)))


def cuda_main(args: argparse.Namespace) -> dict:
    """Share of wall time the GPU spends in a ResNet-50 fed by the engine (CUDA events)."""
    import torch

    from autoscope.infer.engine import pick_device, predict_slide

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    dev = pick_device(args.device)
    path = Path(args.slide) if args.slide else build_slide(PRESETS[args.preset]["side_px"])
    model = resnet50()
    mpp = args.mpp
    if mpp is None:
        from autoscope.infer.source import open_slide

        reader = open_slide(str(path))
        mpp = float(reader.mpp)
        reader.close()
    patch_px, bs = args.patch_px, args.batch_size
    base, _ = tissue_coords(path, mpp, patch_px)
    n = max(bs, args.tiles // bs * bs)  # whole batches: no new shape (cuDNN autotuning) when timed
    coords = np.concatenate([base] * max(1, -(-n // max(1, len(base)))))[:n]
    workers = args.workers or os.cpu_count() or 1
    depth = _shm_depth(workers, bs * patch_px * patch_px * 3)
    kw = {"batch_size": bs, "workers": workers, "queue_depth": depth, "device": str(dev)}
    print(
        f"{torch.cuda.get_device_name(dev)}: {len(coords)} tiles of {patch_px} px at {mpp:.3f} "
        f"um/px from {path.name} ({len(base)} distinct), batch {bs}, {workers} reader workers, "
        f"{depth} batches ahead",
        flush=True,
    )
    predict_slide(
        model, path, mpp=mpp, patch_px=patch_px, coords=coords[: 8 * bs], progress=False, **kw
    )  # warm-up: CUDA context, cuDNN autotuning, forkserver
    pred, wall = timed(
        lambda: predict_slide(
            model,
            path,
            mpp=mpp,
            patch_px=patch_px,
            coords=coords,
            progress=False,
            profile=True,
            **kw,
        )
    )
    t = pred.timings
    n_model = min(len(coords), 64 * bs)
    _, t_model = timed(lambda: model_only(model, n_model, patch_px, bs, dev))
    n_read = min(len(coords), 64 * bs)
    _, t_read = timed(lambda: reader_only(path, coords[:n_read], mpp, patch_px, kw_reader(kw)))
    heavy = sorted(m for m in FORBIDDEN if m in sys.modules)
    engine_tps = len(coords) / t["predict_s"]
    bound = min(n_model / t_model, n_read / t_read)
    return {
        "mode": "cuda",
        "gpu": torch.cuda.get_device_name(dev),
        "torch": torch.__version__,
        "slide": str(path),
        "tiles": len(coords),
        "patch_px": patch_px,
        "mpp": mpp,
        "model": "resnet50 (bf16 autocast, channels-last)",
        "batch_size": bs,
        "workers": workers,
        "queue_depth": depth,
        "gpu_model_busy": t["model_busy_s"] / t["predict_s"],
        "gpu_model_busy_after_first_batch": t["model_busy_s"]
        / max(1e-9, t["predict_s"] - t["first_batch_s"]),
        "timings": {**t, "wall_s": wall},
        "tiles_per_s": {
            "engine": engine_tps,
            "model": n_model / t_model,
            "reader": n_read / t_read,
        },
        "engine_vs_bound": engine_tps / bound,
        "heavy_modules_imported": heavy,
        "targets": {"gpu_model_busy": TARGETS["gpu_model_busy"]},
    }


def kw_reader(kw: dict) -> dict:
    return {k: kw[k] for k in ("batch_size", "workers", "queue_depth")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (CPU mode)")
    ap.add_argument("--naive-tiles", type=int, default=128, help="tiles the naive loop reads")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda[:N] for the GPU-busy mode")
    ap.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet50"])
    ap.add_argument("--batch-size", type=int, default=None, help="64 on CPU, 256 on CUDA")
    ap.add_argument("--workers", type=int, default=None, help="reader processes (CUDA: all cores)")
    ap.add_argument("--patch-px", type=int, default=224, help="CUDA mode: model input side")
    ap.add_argument("--mpp", type=float, default=None, help="CUDA mode: default the slide's own")
    ap.add_argument("--tiles", type=int, default=20000, help="CUDA mode: tiles to run")
    ap.add_argument("--slide", default=None, help="CUDA mode: a slide instead of the synthetic one")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda != (args.arch == "resnet50"):
        ap.error("use --device cuda with --arch resnet50, and the CPU with small_cnn")
    args.batch_size = args.batch_size or (256 if cuda else 64)
    if not cuda:
        args.workers = args.workers or 2
    res = cuda_main(args) if cuda else cpu_main(args)
    res.update(
        host=platform.node(),
        cpus=os.cpu_count(),
        load_avg_1min=os.getloadavg()[0],  # other work on the machine skews the CPU figures
        date=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    out = write_json(res, "infer_cuda.json" if cuda else "infer.json")
    print(json.dumps({k: v for k, v in res.items() if k not in ("targets",)}, indent=1))
    for key, target in res["targets"].items():
        ok = "ok" if res[key] >= target else "BELOW TARGET"
        print(f"{key}: {res[key]:.2f} (target >= {target}) {ok}")
    if cuda and res["heavy_modules_imported"]:
        print(f"warning: heavy modules imported: {res['heavy_modules_imported']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
