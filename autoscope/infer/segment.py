"""The segmentation engine: overlapping tiles -> dense probabilities stitched without seams ->
label TIFF, QuPath polygons, class areas and pictures per slide (`autoscope.tasks` entries).

Tiles are read by the slide engine's prefetching workers (`slides.parallel.iter_batches`), run in
batches through the model (a frozen trace on CPU), blended with a smooth window in a rolling
band (`seg_stitch`) and finished rows go straight into memory-mapped label and confidence maps
in the slide's temporary output folder: memory stays flat in slide size. `summary.json` is
written last, inside the folder that is renamed into place (resumable per slide).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.infer.seg_settings import SETTINGS, SegSettings
from autoscope.infer.seg_stitch import BandStitcher, MapSink
from autoscope.infer.spec import InferSpec

__all__ = ["MapSink", "SegSettings", "infer_slide", "predict_patches", "run_tiles"]

CPU_CALL_PX = 256 * 256  # pixels per model call on a CPU (see dense_probs)


@dataclass
class Stitched:
    """What a stitched run of one slide knows besides its label map."""

    slide_path: str
    slide_mpp: float
    map_px0: float  # level-0 px per map px (the model's mpp / the slide's)
    map_shape: tuple[int, int]  # (rows, cols) of the label map
    tiles: int
    level_dimensions: list[tuple[int, int]]
    thumbnail: np.ndarray
    thumb_downsample: float
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"


def run_tiles(
    model: Any,
    slide_path: str | Path,
    spec: InferSpec,
    settings: SegSettings,
    sink: Any,
    *,
    mpp_x: float | None = None,
    coords: np.ndarray | None = None,
) -> Stitched:
    """Read, run and stitch every tissue tile of one slide; finished rows go to `sink(shape)`.

    `sink` is called once with the map shape `(rows, cols)` and returns the row sink
    (`seg_stitch.Sink`). `coords` (level-0 corners) replaces the tissue grid (benchmarks).

    Raises:
        SlideError: the slide cannot be read or does not fit the model's resolution.
    """
    from autoscope.infer.batching import pick_device, prepare_model
    from autoscope.infer.engine import _progress
    from autoscope.infer.source import SlideError, check_resolution, open_slide, tissue_grid
    from autoscope.slides.parallel import iter_batches

    path, t0 = str(slide_path), time.perf_counter()
    tile = settings.tile_px
    reader = open_slide(path, mpp_x)
    try:
        slide_mpp = check_resolution(reader, spec.mpp, path)
        grid, thumb, thumb_ds = tissue_grid(
            reader,
            mpp=spec.mpp,
            patch_px=tile,
            stride_px=settings.step_px,
            tissue=spec.detector().mask,
            min_tissue=spec.min_tissue,
            cover_edges=True,
        )
        dims = [tuple(int(v) for v in d) for d in reader.level_dimensions]
        if max(thumb.shape[:2]) < 1024:
            thumb = reader.thumbnail(1024)
            thumb_ds = max(dims[0][0] / thumb.shape[1], dims[0][1] / thumb.shape[0])
    except SlideError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file fails inside any backend call
        raise SlideError(f"cannot read slide {path}: {type(e).__name__}: {e}") from None
    finally:
        reader.close()
    grid = grid if coords is None else np.asarray(coords, np.int64)
    px0 = float(spec.mpp) / slide_mpp
    shape = (math.ceil(dims[0][1] / px0), math.ceil(dims[0][0] / px0))
    map_xy = np.round(grid / px0).astype(np.int64) if len(grid) else np.zeros((0, 2), np.int64)
    order = np.lexsort((map_xy[:, 0], map_xy[:, 1])) if len(grid) else np.zeros(0, np.int64)
    grid, map_xy = grid[order], map_xy[order]
    n_classes = len(spec.classes)
    stitch = BandStitcher(n_classes, shape[1], shape[0], tile, sink(shape), settings.window)
    dev = pick_device(spec.device)
    net = prepare_model(model, dev, tile if dev.type != "cpu" else None)  # CPU: eager (faster)
    t1 = time.perf_counter()
    model_s, done = 0.0, 0
    bar = _progress(len(grid), Path(path).name, spec.progress)
    try:
        if len(grid):
            depth = spec.queue_depth()
            batches = iter_batches(
                path, grid, spec.mpp, tile, spec.batch_size, spec.workers, depth, mpp_x=mpp_x
            )
            for patches, _ in batches:
                tm = time.perf_counter()
                probs = dense_probs(net, patches, dev)
                model_s += time.perf_counter() - tm
                if probs.shape[1] != n_classes:
                    raise ValueError(
                        f"model returns {probs.shape[1]} classes, card lists {n_classes}"
                    )
                for p in probs:
                    stitch.add(p, int(map_xy[done, 0]), int(map_xy[done, 1]))
                    done += 1
                if bar is not None:
                    bar.update(len(probs))
        stitch.close()
    except (OSError, ValueError) as e:
        raise SlideError(f"error running tiles of {path}: {type(e).__name__}: {e}") from None
    finally:
        if bar is not None:
            bar.close()
    t2 = time.perf_counter()
    timings = {"open_tissue_s": t1 - t0, "predict_s": t2 - t1, "model_busy_s": model_s}
    return Stitched(
        path, slide_mpp, px0, shape, len(grid), dims, thumb, thumb_ds, timings, str(dev)
    )


def dense_probs(net: Any, patches: np.ndarray, device: Any) -> np.ndarray:
    """Softmax probabilities float32 `[N, C, H, W]` of a uint8 `[N, H, W, 3]` batch.

    On a GPU the batch is one bf16 call. On a CPU it runs in calls of about `CPU_CALL_PX`
    pixels: a dense net's full-resolution activations of a whole batch overflow the caches
    (U-Net, 256 px tiles, 2 cores: 61 tiles/s one at a time, 23 in batches of 16).
    """
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(patches))
        if device.type != "cpu":
            x = x.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits = net(x)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()
        step = max(1, CPU_CALL_PX // max(1, x.shape[1] * x.shape[2]))
        parts = [torch.softmax(net(x[i : i + step]).float(), dim=1) for i in range(0, len(x), step)]
        return torch.cat(parts).numpy()


def infer_slide(
    model: Any,
    slide_path: str | Path,
    out_dir: str | Path,
    spec: InferSpec,
    *,
    mpp_x: float | None = None,
    name: str | None = None,
    root: str | Path | None = None,
    slide_id: str | None = None,
) -> dict[str, Any]:
    """Segment one slide and write `out_dir/<name>/` atomically (`summary.json` last).

    Writes `labels.tif` (pyramidal label TIFF), `regions.geojson` (QuPath annotations per class),
    `heatmap.png`, `labels.png`, `overview.png` and `summary.json` (tiles, class areas in mm²).
    Arguments as `autoscope.infer.engine.infer_slide`.

    Raises:
        SlideError: the slide cannot be read or does not fit the model's resolution.
        UserError: a bad `infer.segment` setting.
    """
    from autoscope.atomic import atomic_dir
    from autoscope.infer.seg_summary import write_outputs

    settings = SegSettings.from_spec(spec)
    final = Path(out_dir) / (name or Path(slide_path).stem)
    with atomic_dir(final) as tmp:
        sink = MapSink(tmp, len(spec.classes))
        run = run_tiles(model, slide_path, spec, settings, sink, mpp_x=mpp_x)
        summary = write_outputs(run, sink, tmp, spec, settings, final, root=root, slide_id=slide_id)
    return summary


def predict_patches(model: Any, x: np.ndarray, spec: InferSpec) -> list[dict[str, Any]]:
    """Masks of a batch of patches (the bento's segmentation API).

    Args:
        model: the archived dense PatchClassifier.
        x: uint8 `[N, patch_px, patch_px, 3]` pixels at the card's mpp.
        spec: the card's inference spec (classes, patch_px).

    Returns:
        per patch: `mask` (class index per pixel, nested lists), `areas_px` {class: pixels} and
        `mean_probability` {class: mean probability over its pixels}.

    Raises:
        ValueError: not a uint8 batch of the card's patch size.
    """
    from autoscope.infer.batching import pick_device, prepare_model, uint8_patches

    arr = uint8_patches(x, spec.patch_px)
    dev = pick_device(spec.device)
    probs = dense_probs(prepare_model(model, dev, spec.patch_px), arr, dev)
    names = [c.name for c in spec.classes]
    out = []
    for p in probs:
        mask = p.argmax(0)
        top = p.max(0)
        areas = {n: int((mask == k).sum()) for k, n in enumerate(names)}
        mean = {
            n: (float(top[mask == k].mean()) if areas[n] else None) for k, n in enumerate(names)
        }
        out.append({"mask": mask.astype(int).tolist(), "areas_px": areas, "mean_probability": mean})
    return out


def settings_keys() -> Mapping[str, Any]:
    """The `infer.segment` keys and their defaults (docs, tests)."""
    return dict(SETTINGS)
