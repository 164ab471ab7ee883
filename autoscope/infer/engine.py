"""The WSI inference engine: tissue grid -> prefetched uint8 batches -> model -> per-slide outputs.

Only torch, numpy and the slide reader are imported by `predict_slide`, so the engine runs on a GPU
host without the rest of the stack; the writers (pandas, shapely, matplotlib) load in
`infer_slide`. Memory is bounded: tiles stream through a bounded queue and only the small
per-tile probabilities are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.errors import UserError
from autoscope.infer.batching import pick_device, prepare_model, run_model
from autoscope.infer.cuda_feed import device_batches, run_model_cuda
from autoscope.infer.gpu_decode import open_gpu_source
from autoscope.infer.source import (
    SlideError,
    check_resolution,
    level0_px,
    open_slide,
    tissue_grid,
)
from autoscope.infer.spec import DECODE_MODES, InferSpec
from autoscope.slides.parallel import iter_batches

__all__ = [
    "InferSpec",
    "Prediction",
    "SlideError",
    "infer_slide",
    "pick_device",
    "predict_slide",
    "run_model",
]

THUMBNAIL_PX = 1024  # longest side of the picture under the heatmap PNG and overview

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """Per-tile predictions of one slide plus what the writers need to draw them."""

    slide_path: str
    coords: np.ndarray  # int64 [N, 2] level-0 top-left corners
    probs: np.ndarray  # float32 [N, C] softmax probabilities
    tile0_px: float  # tile side in level-0 px
    step0_px: float  # grid step in level-0 px
    slide_mpp: float  # level-0 MPP
    level_dimensions: list[tuple[int, int]]
    thumbnail: np.ndarray  # uint8 [h, w, 3]
    thumb_downsample: float  # level-0 px per thumbnail px
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    decode: str = "cpu"  # where the tiles were decoded: cpu (reader processes) or the device
    decode_note: str = ""  # why the device decoder was not used, if it was wanted


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="tile", leave=False, dynamic_ncols=True)


def predict_slide(
    model: Any,
    slide_path: str | Path,
    *,
    mpp: float,
    patch_px: int,
    stride_px: int | None = None,
    batch_size: int = 64,
    workers: int = 2,
    tissue: Callable[[np.ndarray], np.ndarray] | None = None,
    device: str = "auto",
    mpp_x: float | None = None,
    progress: bool = True,
    queue_depth: int | None = None,
    min_tissue: float = 0.1,
    amp: bool = True,
    profile: bool = False,
    coords: np.ndarray | None = None,
    decode: str = "auto",
) -> Prediction:
    """Predict every tissue tile of one slide (no files written). See `infer_slide` for arguments.

    `coords` (level-0 top-left corners) replaces the tissue grid when given (benchmarks).
    `decode`: `cpu` reads tiles in reader processes; `gpu` decodes the stored JPEG tiles on the
    model's device (`autoscope.infer.gpu_decode`; on a CPU device with the same code, which the
    tests use); `auto` is `gpu` on CUDA, else `cpu`. A slide the device decoder cannot read as
    the reader does (resampling, not JPEG tiles, other colours) falls back to `cpu`.

    Raises:
        SlideError: the slide cannot be opened or its resolution does not fit the model.
    """
    path = str(slide_path)
    stride_px = stride_px or patch_px
    if decode not in DECODE_MODES:
        raise UserError(f"infer.decode: {decode!r} is not one of {', '.join(DECODE_MODES)}")
    t0 = time.perf_counter()
    reader = open_slide(path, mpp_x)
    try:
        slide_mpp = check_resolution(reader, mpp, path)
        grid, thumb, thumb_ds = tissue_grid(
            reader,
            mpp=mpp,
            patch_px=patch_px,
            stride_px=stride_px,
            tissue=tissue,
            min_tissue=min_tissue,
        )
        dims = [tuple(int(v) for v in d) for d in reader.level_dimensions]
        if max(thumb.shape[:2]) < THUMBNAIL_PX:  # the pictures want more detail than the mask
            thumb = reader.thumbnail(THUMBNAIL_PX)
            thumb_ds = max(dims[0][0] / thumb.shape[1], dims[0][1] / thumb.shape[0])
    except SlideError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file fails inside any backend call
        raise SlideError(f"cannot read slide {path}: {type(e).__name__}: {e}") from None
    finally:
        reader.close()
    grid = grid if coords is None else np.asarray(coords, np.int64)
    t1 = time.perf_counter()
    dev = pick_device(device)
    model = prepare_model(model, dev, patch_px)
    src, note = None, ""
    if len(grid) and (decode == "gpu" or (decode == "auto" and dev.type == "cuda")):
        src, note = open_gpu_source(
            path, mpp=mpp, patch_px=patch_px, device=dev, mpp_x=mpp_x, probe=grid
        )
        if src is None:
            log.info("%s: device JPEG decode not used (%s); CPU readers", path, note)
    bar = _progress(len(grid), Path(path).name, progress)
    try:
        if src is not None:
            chunks = (grid[i : i + batch_size] for i in range(0, len(grid), batch_size))
            if dev.type == "cuda":
                batches: Any = device_batches(src.batch, chunks, dev)
            else:
                batches = ((src.batch(c), c) for c in chunks)
        else:
            depth = queue_depth or max(2, 2 * workers)
            batches = iter_batches(
                path, grid, mpp, patch_px, batch_size, workers, depth, mpp_x=mpp_x
            )
        run = run_model_cuda if dev.type == "cuda" else run_model
        out_coords, probs, stats = run(
            model, batches, device=dev, amp=amp, profile=profile, bar=bar
        )
    except SlideError:
        raise
    except (OSError, ValueError) as e:  # decoder errors on a corrupt tile
        raise SlideError(f"error reading tiles of {path}: {type(e).__name__}: {e}") from None
    finally:
        if bar is not None:
            bar.close()
        if src is not None:
            stats_dec = {
                "tiles_decoded": float(src.decoded),
                "fallback_batches": src.fallback_batches,
            }
            src.close()
    timings = {"open_tissue_s": t1 - t0, **stats, "total_s": time.perf_counter() - t0}
    if src is not None:
        timings.update(stats_dec)
    return Prediction(
        slide_path=path,
        coords=out_coords,
        probs=probs,
        tile0_px=level0_px(slide_mpp, mpp, patch_px),
        step0_px=level0_px(slide_mpp, mpp, stride_px),
        slide_mpp=slide_mpp,
        level_dimensions=dims,
        thumbnail=thumb,
        thumb_downsample=thumb_ds,
        timings=timings,
        device=str(dev),
        decode="cpu" if src is None else "device",
        decode_note=note,
    )


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
    """Run `model` over the tissue of one slide as `spec` says and write its outputs atomically.

    Writes `out_dir/<name>/`: `tiles.parquet`, `heatmap.png`, `heatmap.tif`, `regions.geojson`,
    `overview.png` and last `summary.json` (its presence marks the slide as done).

    Args:
        model: a module taking uint8 `[N, H, W, 3]` tiles and returning logits `[N, C]`.
        slide_path: any slide OpenSlide (or the slide engine) opens.
        out_dir: parent folder of the per-slide output folder.
        spec: the model card's input spec, classes and tissue detector plus the infer settings.
        mpp_x: MPP override for slides without one.
        name: output folder name (default: the slide file stem).
        root: the workspace: the summary records paths relative to it (file names elsewhere).
        slide_id: the slide's registry id, recorded in the summary (None: not registered).

    Returns:
        The summary dict (also written as `summary.json`).

    Raises:
        SlideError: the slide cannot be read or does not fit the model's resolution.
    """
    pred = predict_slide(
        model,
        slide_path,
        mpp=spec.mpp,
        patch_px=spec.patch_px,
        stride_px=spec.step_px,
        batch_size=spec.batch_size,
        workers=spec.workers,
        tissue=spec.detector().mask,
        device=spec.device,
        mpp_x=mpp_x,
        progress=spec.progress,
        queue_depth=spec.queue_depth(),
        min_tissue=spec.min_tissue,
        decode=spec.decode,
    )
    classes = spec.class_dicts
    if len(pred.coords) == 0:  # no tissue: an empty but complete result
        pred.probs = np.zeros((0, len(classes)), np.float32)
    if pred.probs.shape[1] != len(classes):
        raise ValueError(f"model returns {pred.probs.shape[1]} classes, card lists {len(classes)}")
    from autoscope.infer.writers import write_outputs

    info = {"mpp": spec.mpp, "patch_px": spec.patch_px, "stride_px": spec.step_px}
    return write_outputs(
        pred,
        Path(out_dir),
        classes,
        model_info={**info, **spec.model_info},
        name=name,
        root=root,
        slide_id=slide_id,
    )
