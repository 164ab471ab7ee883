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

CUDA mode (``--device cuda --arch resnet50 [--preset full] [--patch-px 224,256]``) measures, for
a ResNet-50 (defined here) under bf16 autocast, both tile paths of the engine: ``cpu_decode``
(reader processes, cores - 1 of them) and ``gpu_decode`` (stored JPEG tiles decoded by nvJPEG,
patches cut on the GPU): tiles/s, the share of wall time the GPU spends in the model (CUDA events;
``gpu_model_busy``, target >= 90 %) and ``engine_vs_bound`` against min(model-only, reader-only
or decode-only); plus the device decoder's pixel differences from the reader on the Aperio
fixture and synthetic 4:2:0/4:4:4 slides, and how far the two paths' probabilities differ.
``--device cpu --arch resnet50 --tiles 64 --batch-size 16`` dry-runs the same code on the CPU.
It imports only the engine and its few dependencies (torch, torchvision, numpy, openslide,
tifffile/imagecodecs, PIL): no hydra, mlflow, bentoml, lightning or pandas. A GPU host
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
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT_DIR = ROOT / "outputs" / "bench"
PRESETS = {  # synthetic slide side (level-0 px at 0.5 um/px) and timed repetitions
    "quick": {"side_px": 16384, "reps": 5},  # ~2,400 tiles: start-up amortised as in real use
    "full": {"side_px": 32768, "reps": 3},
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

    mc = yaml.safe_load((ROOT / "autoscope" / "conf" / "model" / "small_cnn.yaml").read_text())
    proj = yaml.safe_load((ROOT / "autoscope" / "conf" / "project" / "demo.yaml").read_text())
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
    from autoscope.slides.parallel import iter_batches

    b, w, q = kw["batch_size"], kw["workers"], kw["queue_depth"]
    return sum(len(c) for _, c in iter_batches(str(path), coords, mpp, patch_px, b, w, q))


def model_only(model: Any, n: int, patch_px: int, batch_size: int, device: Any) -> None:
    """The model alone over `n` tiles of in-memory uint8 batches (host -> device included)."""
    import torch

    from autoscope.infer.batching import run_model
    from autoscope.infer.cuda_feed import run_model_cuda

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (batch_size, patch_px, patch_px, 3), dtype=np.uint8)
    coords = np.zeros((batch_size, 2), np.int64)

    def batches():
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            yield batch[:m], coords[:m]

    (run_model_cuda if device.type == "cuda" else run_model)(model, batches(), device=device)
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

    from autoscope.infer.batching import prepare_model
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
    ready = prepare_model(
        model, dev, patch_px
    )  # the bound uses the model exactly as the engine runs it
    model_only(ready, 2 * args.batch_size, patch_px, args.batch_size, dev)
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
            timed(lambda: model_only(ready, n, patch_px, kw["batch_size"], dev))[1]
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


def decode_only(
    path: Path, coords: np.ndarray, mpp: float, patch_px: int, bs: int, dev: Any
) -> str:
    """Drain the device-decode source without a model (its bound); returns its open status."""
    import torch

    from autoscope.infer.cuda_feed import device_batches
    from autoscope.infer.gpu_decode import open_gpu_source

    src, why = open_gpu_source(str(path), mpp=mpp, patch_px=patch_px, device=dev)
    if src is None:
        return why
    try:
        chunks = (coords[i : i + bs] for i in range(0, len(coords), bs))
        if dev.type == "cuda":
            for _x, ev, _ in device_batches(src.batch, chunks, dev):
                torch.cuda.current_stream(dev).wait_event(ev)
            torch.cuda.synchronize(dev)
        else:
            for c in chunks:
                src.batch(c)
    finally:
        src.close()
    return why


def decode_checks(dev: Any) -> dict:
    """Device decode vs the CPU reader on the real Aperio fixture and small synthetic slides."""
    from autoscope.infer.gpu_decode import open_gpu_source
    from autoscope.slides.reader import open_reader
    from autoscope.slides.synth import make_synthetic_slide

    slides = {"aperio_rgb": ROOT / "tests" / "fixtures" / "cmu-1-small-region.svs"}
    for sub in ("420", "444"):
        p = OUT_DIR / f"decode_check_{sub}.tif"
        if not p.is_file():
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            make_synthetic_slide(p, seed=5, width_px=2048, height_px=2048, subsampling=sub)
        slides[f"synth_{sub}"] = p
    out = {}
    for name, path in slides.items():
        if not path.is_file():
            continue
        with open_reader(str(path)) as r:
            w, h = r.level_dimensions[0]
            mpp = float(r.mpp)
        rng = np.random.default_rng(0)
        coords = rng.integers(-100, [w - 100, h - 100], (32, 2))
        src, why = open_gpu_source(str(path), mpp=mpp, patch_px=224, device=dev)
        if src is None:
            out[name] = {"status": why}
            continue
        try:
            mx, mean = src.check(coords)
            out[name] = {"status": why, "max_abs_diff": mx, "mean_abs_diff": mean}
        except Exception as err:  # noqa: BLE001 - reported, the benchmark goes on
            out[name] = {"status": f"{type(err).__name__}: {err}"}
        finally:
            src.close()
    print(f"device decode vs reader: {out}", flush=True)
    return out


def _device_run(
    path: Path, mpp: float, patch_px: int, args: argparse.Namespace, model: Any
) -> dict:
    """Both decode paths at one patch size: engine, model-only, reader-only, decode-only."""
    import torch

    from autoscope.infer.engine import pick_device, predict_slide

    dev = pick_device(args.device)
    bs = args.batch_size
    base, _ = tissue_coords(path, mpp, patch_px)
    n = max(bs, args.tiles // bs * bs)  # whole batches: no new shape (cuDNN autotuning) when timed
    coords = np.concatenate([base] * max(1, -(-n // max(1, len(base)))))[:n]
    workers = args.workers or max(1, (os.cpu_count() or 2) - 1)  # one core for the main process
    depth = _shm_depth(workers, bs * patch_px * patch_px * 3)
    kw = {"batch_size": bs, "workers": workers, "queue_depth": depth, "device": str(dev)}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(
        f"{name}: {len(coords)} tiles of {patch_px} px at {mpp:.3f} um/px from {path.name} "
        f"({len(base)} distinct), batch {bs}, {workers} reader workers, {depth} batches ahead",
        flush=True,
    )
    res: dict[str, Any] = {"patch_px": patch_px, "tiles": len(coords), "workers": workers}
    res["queue_depth"] = depth
    probs = {}
    for decode in ("cpu", "gpu"):
        run_kw = {**kw, "mpp": mpp, "patch_px": patch_px, "progress": False, "decode": decode}
        try:  # one failing path is reported; the other still runs
            predict_slide(model, path, coords=coords[: 4 * bs], **run_kw)  # warm-up
            pred, wall = timed(
                lambda run_kw=run_kw: predict_slide(
                    model, path, coords=coords, profile=True, **run_kw
                )
            )
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            res[f"{decode}_decode"] = {"error": f"{type(err).__name__}: {err}"}
            continue
        t = pred.timings
        probs[decode] = pred.probs
        res[f"{decode}_decode"] = {
            "used": pred.decode,
            "note": pred.decode_note,
            "engine_tiles_per_s": len(coords) / t["predict_s"],
            "gpu_model_busy": t["model_busy_s"] / t["predict_s"],
            "gpu_model_busy_after_first_batch": t["model_busy_s"]
            / max(1e-9, t["predict_s"] - t["first_batch_s"]),
            "timings": {**t, "wall_s": wall},
        }
        print(f"  {decode}-decode engine: {res[f'{decode}_decode']}", flush=True)
    n_part = min(len(coords), 32 * bs)
    rates = {}
    for name, fn in (
        ("model", lambda: model_only(model, n_part, patch_px, bs, dev)),
        ("reader", lambda: reader_only(path, coords[:n_part], mpp, patch_px, kw_reader(kw))),
        ("decode", lambda: decode_only(path, coords[:n_part], mpp, patch_px, bs, dev)),
    ):
        try:
            why, t_part = timed(fn)
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            res[f"{name}_only_error"] = f"{type(err).__name__}: {err}"
            continue
        rates[name] = n_part / t_part
        if name == "decode":
            res["decode_only_status"] = why
    res["bound_tiles_per_s"] = rates
    for decode, feed in (("cpu", "reader"), ("gpu", "decode")):
        r = res[f"{decode}_decode"]
        if "error" not in r and "model" in rates and feed in rates:
            r["engine_vs_bound"] = r["engine_tiles_per_s"] / min(rates["model"], rates[feed])
    if len(probs) < 2:
        return res
    diff = np.abs(probs["cpu"] - probs["gpu"])
    res["probs_max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    res["argmax_agree"] = float(np.mean(probs["cpu"].argmax(1) == probs["gpu"].argmax(1)))
    print(f"  bounds {rates}; cpu vs gpu decode probs max diff {res['probs_max_abs_diff']:.3g}")
    return res


def device_main(args: argparse.Namespace) -> dict:
    """ResNet-50 fed by the engine on a device, CPU-decode and device-decode paths compared."""
    import torch

    from autoscope.infer.engine import pick_device

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    path = Path(args.slide) if args.slide else build_slide(PRESETS[args.preset]["side_px"])
    model = resnet50()
    mpp = args.mpp
    if mpp is None:
        from autoscope.infer.source import open_slide

        reader = open_slide(str(path))
        mpp = float(reader.mpp)
        reader.close()
    out: dict[str, Any] = {
        "mode": "cuda" if args.device.startswith("cuda") else "device-dry-run",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "slide": str(path),
        "mpp": mpp,
        "model": "resnet50 (bf16 autocast, channels-last)",
        "batch_size": args.batch_size,
        "runs": [],
    }
    out["decode_checks"] = decode_checks(pick_device(args.device))
    for patch_px in [int(p) for p in str(args.patch_px).split(",")]:
        out["runs"].append(_device_run(path, mpp, patch_px, args, model))
        write_json(out, args.json_name)  # partial results survive a time limit
    first = out["runs"][0]
    busy = {d: first[f"{d}_decode"].get("gpu_model_busy", 0.0) for d in ("cpu", "gpu")}
    out["best_decode"] = max(busy, key=busy.get)
    out["gpu_model_busy"] = busy[out["best_decode"]]
    out["heavy_modules_imported"] = sorted(m for m in FORBIDDEN if m in sys.modules)
    out["targets"] = {"gpu_model_busy": TARGETS["gpu_model_busy"]}
    return out


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
    ap.add_argument("--workers", type=int, default=None, help="reader processes (ResNet: cores-1)")
    ap.add_argument("--patch-px", default="224", help="ResNet mode: model input side(s), 224,256")
    ap.add_argument("--mpp", type=float, default=None, help="CUDA mode: default the slide's own")
    ap.add_argument("--tiles", type=int, default=20000, help="CUDA mode: tiles to run")
    ap.add_argument("--slide", default=None, help="CUDA mode: a slide instead of the synthetic one")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and args.arch != "resnet50":
        ap.error(
            "use --device cuda with --arch resnet50 (--device cpu --arch resnet50 dry-runs it)"
        )
    resnet = args.arch == "resnet50"
    args.batch_size = args.batch_size or (256 if resnet else 64)
    args.json_name = "infer_cuda.json" if cuda else "infer_device_dry_run.json"
    if not resnet:
        args.workers = args.workers or 2
    res = device_main(args) if resnet else cpu_main(args)
    res.update(
        host=platform.node(),
        cpus=os.cpu_count(),
        load_avg_1min=os.getloadavg()[0],  # other work on the machine skews the CPU figures
        date=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    out = write_json(res, args.json_name if resnet else "infer.json")
    print(json.dumps({k: v for k, v in res.items() if k not in ("targets",)}, indent=1))
    for key, target in res["targets"].items():
        ok = "ok" if res[key] >= target else "BELOW TARGET"
        print(f"{key}: {res[key]:.2f} (target >= {target}) {ok}")
    if resnet and res["heavy_modules_imported"]:
        print(f"warning: heavy modules imported: {res['heavy_modules_imported']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
