"""Tile reading throughput: this reader vs OpenSlide and vs the libjpeg-turbo decode limit.

Run: ``.venv/bin/python benchmarks/tiles.py [--preset quick|full] [--subsampling 420|444]``.

Builds (once, cached under ``outputs/bench/``) a deterministic synthetic pyramidal JPEG TIFF and,
in one run, interleaved, times each mode on the same window of the slide per repetition:

- ``openslide``: ``np.asarray(OpenSlide.read_region(...).convert("RGB"))`` per 256 px tile: an
  RGB array straight from OpenSlide, the baseline;
- ``limit``: ``imagecodecs.jpeg8_decode`` of the same stored tile bytes, already in memory (no
  file access, no Python around it: the one-core libjpeg-turbo limit), each into a fresh array
  placed where the decoder writes fastest (32-byte aligned targets decoded ~30 % slower here;
  see ``autoscope.slides.tiff_fast.empty_rgb``);
- ``aligned``: this reader, 256 px reads on the slide's own tile grid;
- ``unaligned``: this reader, 224 px patches on a 224 px grid (cut from cached tiles);
- ``fallback``: this reader forced through OpenSlide (``backend="openslide"``), 256 px aligned;
- ``workers2`` / ``workers2_pickle``: ``iter_batches`` with 2 processes (start-up included),
  shared-memory ring vs pickled arrays;
- ``svs_openslide`` / ``svs_limit`` / ``svs_aligned``: the first three on every whole stored tile
  of the real Aperio fixture ``tests/fixtures/cmu-1-small-region.svs`` (shared JPEG tables).

Ratios are medians of per-repetition ratios of wall-clock tiles/s; ``cpu_time_ratios`` repeats
them per CPU-second of this process, which other load on a shared machine disturbs less.

Then the tissue mask of the whole slide (project defaults in ``conf/``) is timed against the
time to tile the whole slide, and compared with the generator's ground truth (IoU). It prints
tiles/s and the median per-repetition ratios, and writes ``outputs/bench/tiles.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "outputs" / "bench"
SVS = ROOT / "tests" / "fixtures" / "cmu-1-small-region.svs"  # a real Aperio slide
TILE_PX = 256  # the synthetic slide's tile side: "aligned" reads are exactly one stored tile
PATCH_UNALIGNED = 224  # a common model input size, off the tile grid
PRESETS = {  # slide side (level-0 px) and the timed window side (level-0 px, centred)
    "quick": {"side_px": 8192, "window_px": 4096},
    "full": {"side_px": 30720, "window_px": 16384},
}
TARGETS = {
    "aligned_vs_limit": 0.85,
    "unaligned_vs_aligned": 0.8,
    "fallback_vs_openslide": 1.0,
    "tissue_iou": 0.95,
}
MAX_TISSUE_SHARE = 0.03
RATIOS = {  # ratio name: (numerator mode, denominator mode), medians of per-repetition ratios
    "aligned_vs_limit": ("aligned", "limit"),
    "unaligned_vs_aligned": ("unaligned", "aligned"),
    "fallback_vs_openslide": ("fallback", "openslide"),
    "aligned_vs_openslide": ("aligned", "openslide"),
    "limit_vs_openslide": ("limit", "openslide"),
    "workers2_vs_aligned": ("workers2", "aligned"),
    "shm_vs_pickle": ("workers2", "workers2_pickle"),
    "svs_aligned_vs_limit": ("svs_aligned", "svs_limit"),
    "svs_aligned_vs_openslide": ("svs_aligned", "svs_openslide"),
}
CPU_RATIOS = ("aligned_vs_limit", "unaligned_vs_aligned", "aligned_vs_openslide")
CPU_RATIOS += ("fallback_vs_openslide",)  # the single-process modes


def build_slide(preset: str, subsampling: str):
    """The cached synthetic slide of a preset (generated on first use)."""
    from autoscope.slides.synth import SynthSlide, make_synthetic_slide

    side = PRESETS[preset]["side_px"]
    path = OUT_DIR / f"synth_{preset}_{side}_{subsampling}.tif"
    mask_path = path.with_name(path.stem + "_mask.png")
    if path.is_file() and mask_path.is_file():
        from PIL import Image

        truth = np.asarray(Image.open(mask_path))
        return SynthSlide(path, mask_path, path.with_suffix(".geojson"), truth, 16, side, side)
    print(f"generating {path.name} ({side} x {side} px) ...", flush=True)
    kw = {"seed": 0, "tile_px": TILE_PX, "subsampling": subsampling, "mask_downsample": 16}
    return make_synthetic_slide(path, width_px=side, height_px=side, **kw)


def window_coords(side: int, window: int, patch_px: int) -> np.ndarray:
    """Row-major grid of ``patch_px`` patches in the centred window (anchored on the tile grid)."""
    from autoscope.slides.samplers import grid

    start = (side - window) // 2 // TILE_PX * TILE_PX
    return grid(window, window, patch_px, patch_px) + start


def base_modes(path: str, aligned: np.ndarray, prefix: str = "") -> tuple[dict[str, Callable], Any]:
    """``openslide``, ``limit`` and ``aligned`` closures over one slide's aligned tiles, and
    the open reader. Each closure reads its coordinates once and returns the patch count."""
    import imagecodecs
    import openslide

    from autoscope.slides.reader import open_reader
    from autoscope.slides.tiff_fast import empty_rgb

    slide = openslide.OpenSlide(path)
    reader = open_reader(path)
    fast = reader.fast_levels[0]
    assert fast is not None, f"{path} must take the fast path"
    tw, th = fast.tile_w, fast.tile_h
    stored = [fast.tile_bytes(x // tw, y // th) for x, y in aligned.tolist()]
    tables, cs = fast.tables, fast.colorspace
    xy = aligned.tolist()

    def run_openslide() -> int:
        for x, y in xy:
            np.asarray(slide.read_region((x, y), 0, (tw, th)).convert("RGB"))
        return len(xy)

    def run_limit() -> int:
        for data in stored:
            out = empty_rgb((th, tw, 3))  # the decoder's fastest target (see empty_rgb)
            imagecodecs.jpeg8_decode(data, tables=tables, colorspace=cs, outcolorspace=2, out=out)
        return len(stored)

    def run_aligned() -> int:
        reader.cache.clear()
        for x, y in xy:
            reader.read_region(x, y, 0, tw, th)
        return len(xy)

    modes = {"openslide": run_openslide, "limit": run_limit, "aligned": run_aligned}
    return {prefix + k: v for k, v in modes.items()}, reader


def make_modes(
    path: str, aligned: np.ndarray, unaligned: np.ndarray
) -> tuple[dict[str, Callable], dict[str, list[float]]]:
    """Every mode's closure, and the lists where the worker modes record their steady-state
    rate (after the first batch, i.e. without process start-up)."""
    from autoscope.slides.parallel import iter_batches
    from autoscope.slides.reader import open_reader
    from autoscope.slides.samplers import grid

    modes, reader = base_modes(path, aligned)
    slow = open_reader(path, backend="openslide")
    xy_a, xy_u = aligned.tolist(), unaligned.tolist()

    def run_unaligned() -> int:
        reader.cache.clear()
        for x, y in xy_u:
            reader.read_region(x, y, 0, PATCH_UNALIGNED, PATCH_UNALIGNED)
        return len(xy_u)

    def run_fallback() -> int:
        for x, y in xy_a:
            slow.read_region(x, y, 0, TILE_PX, TILE_PX)
        return len(xy_a)

    steady: dict[str, list[float]] = {"shm": [], "pickle": []}

    def workers(transport: str) -> Callable[[], int]:
        def run() -> int:
            n, n_first, t_first = 0, 0, 0.0
            batches = iter_batches(
                path, aligned, reader.mpp, TILE_PX, 32, 2, 4, transport=transport
            )
            for batch, _ in batches:
                if n == 0:
                    t_first, n_first = time.perf_counter(), len(batch)
                n += len(batch)
            steady[transport].append((n - n_first) / (time.perf_counter() - t_first))
            return n

        return run

    modes.update(unaligned=run_unaligned, fallback=run_fallback)
    modes.update(workers2=workers("shm"), workers2_pickle=workers("pickle"))
    if SVS.is_file():
        with open_reader(SVS) as svs:  # every whole stored tile (square, 240 px)
            (w, h), tile = svs.level_dimensions[0], svs.fast_levels[0].tile_w
        modes.update(base_modes(str(SVS), grid(w, h, tile, tile), "svs_")[0])
    return modes, steady


def time_tissue(path: str, truth: np.ndarray) -> tuple[float, float]:
    """Seconds to mask the tissue of an open slide (project defaults), and IoU vs the truth.

    The slide is opened outside the timed part: every pipeline opens it once for both its tissue
    mask and its tiles (ingest, dataset build, inference), so opening belongs to tiling.
    """
    from omegaconf import OmegaConf

    from autoscope.slides.mask_metrics import mask_iou
    from autoscope.slides.reader import open_reader
    from autoscope.slides.tissue import TissueDetector, slide_mask

    conf = ROOT / "autoscope" / "conf"
    kwargs = OmegaConf.to_container(OmegaConf.load(conf / "tissue" / "default.yaml"))
    kwargs.pop("_target_", None)
    mask_mpp = float(OmegaConf.load(conf / "slides" / "default.yaml").mask_mpp)
    with open_reader(path) as reader:
        t0 = time.perf_counter()
        mask, _ = slide_mask(reader, mask_mpp, TissueDetector(**kwargs))
        seconds = time.perf_counter() - t0
    return seconds, mask_iou(mask, truth)


def median_ratio(rates: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(rates[num], rates[den], strict=True))


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="slide size")
    p.add_argument("--subsampling", choices=["420", "444"], default="420", help="JPEG chroma")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions (>= 7 advised)")
    p.add_argument("--out", type=Path, default=OUT_DIR / "tiles.json", help="result JSON")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    synth = build_slide(args.preset, args.subsampling)
    path, side = str(synth.path), PRESETS[args.preset]["side_px"]
    window = min(side, PRESETS[args.preset]["window_px"])
    aligned = window_coords(side, window, TILE_PX)
    unaligned = window_coords(side, window, PATCH_UNALIGNED)
    modes, steady = make_modes(path, aligned, unaligned)
    rates: dict[str, list[float]] = {m: [] for m in modes}
    cpu_rates: dict[str, list[float]] = {m: [] for m in modes}  # per CPU-second of this process
    tissue_s: list[float] = []
    iou = float("nan")
    names = list(modes)
    time_tissue(path, synth.label_mask)  # warm-up: scipy/skimage imports are once per process
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate: no fixed slot
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            n = modes[name]()
            rates[name].append(n / (time.perf_counter() - t0))
            cpu_rates[name].append(n / max(time.process_time() - c0, 1e-9))
        seconds, iou = time_tissue(path, synth.label_mask)
        tissue_s.append(seconds)
        print(
            f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{m} {rates[m][-1]:.0f}" for m in names),
            flush=True,
        )

    tiles_whole_slide = (side // TILE_PX) ** 2
    tiling_s = [tiles_whole_slide / r for r in rates["aligned"]]
    result = {
        "preset": args.preset,
        "slide": dict(
            path=path,
            side_px=side,
            tile_px=TILE_PX,
            subsampling=args.subsampling,
            window_px=window,
            tiles_aligned=len(aligned),
            patches_unaligned=len(unaligned),
        ),
        "reps": args.reps,
        "tiles_per_s": {m: statistics.median(v) for m, v in rates.items()},
        "tiles_per_s_raw": rates,
        "workers2_steady_tiles_per_s": {k: statistics.median(v) for k, v in steady.items()},
        **{k: median_ratio(rates, a, b) for k, (a, b) in RATIOS.items() if a in rates},
        "cpu_time_ratios": {  # single-process modes per CPU-second: robust on a shared machine
            k: median_ratio(cpu_rates, *RATIOS[k]) for k in CPU_RATIOS
        },
        "tissue_iou": iou,
        "tissue_seconds": statistics.median(tissue_s),
        "tissue_share_of_tiling": statistics.median(
            t / s for t, s in zip(tissue_s, tiling_s, strict=True)
        ),
        "targets": {**TARGETS, "tissue_share_of_tiling_max": MAX_TISSUE_SHARE},
        "machine": dict(
            cpus=os.cpu_count(), python=sys.version.split()[0], platform=platform.platform()
        ),
        "seconds_total": time.perf_counter() - t_start,
    }
    write_json(args.out, result)
    print_table(result, args.out)
    return result


def print_table(r: dict, out: Path) -> None:
    """Tiles/s per mode and the median ratios against their targets."""
    print(
        f"\ntiles benchmark ({r['preset']}: {r['slide']['side_px']}^2 px synthetic JPEG "
        f"{r['slide']['subsampling']},"
        f" {r['slide']['window_px']}^2 px window, {r['reps']} interleaved reps)"
    )
    print(f"{'mode':<18}{'tiles/s':>10}")
    for mode, rate in r["tiles_per_s"].items():
        print(f"{mode:<18}{rate:>10.0f}")
    print(f"\n{'ratio (median per rep)':<28}{'value':>8}{'target':>9}")
    for key, target in TARGETS.items():
        ok = "ok" if r[key] >= target else "SHORT"
        print(f"{key:<28}{r[key]:>8.3f}{'>= ' + str(target):>9}  {ok}")
    for key in [k for k in RATIOS if k not in TARGETS]:
        if key in r:
            print(f"{key:<28}{r[key]:>8.3f}")
    cpu = r["cpu_time_ratios"]
    print("per CPU-second of this process: " + ", ".join(f"{k} {v:.3f}" for k, v in cpu.items()))
    share = r["tissue_share_of_tiling"]
    ok = "ok" if share <= MAX_TISSUE_SHARE else "SHORT"
    print(f"{'tissue_share_of_tiling':<28}{share:>8.3f}{'<= ' + str(MAX_TISSUE_SHARE):>9}  {ok}")
    st = r["workers2_steady_tiles_per_s"]
    print(
        f"workers2 after the first batch (no start-up): shm {st['shm']:.0f}, "
        f"pickle {st['pickle']:.0f} tiles/s"
    )
    print(
        f"(tissue mask {r['tissue_seconds'] * 1000:.0f} ms; written {out},"
        f" {r['seconds_total']:.0f} s in all)"
    )


if __name__ == "__main__":
    main()
