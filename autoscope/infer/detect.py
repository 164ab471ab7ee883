"""The cell detection engine: overlapping tissue tiles -> heatmaps -> peaks -> one cell list.

Tiles overlap by at least one cell diameter (`infer.detect.overlap_um`); each tile keeps only the
cells whose centre lies in its core (the tile minus half the overlap on every side that has a
neighbour), so a cell seen by two tiles is kept once; a last distance merge (`merge_um`) takes
what rounding leaves. Tiles stream through the prefetching readers and only the cells are kept:
memory stays flat in slide size. `run_tiles` (no files) is what the benchmark times;
`infer_slide` writes the outputs (`det_writers`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.infer.det_settings import DetSettings
from autoscope.infer.spec import InferSpec


@dataclass
class Found:
    """The cells of one slide and what the writers need to draw them."""

    slide_path: str
    cells: np.ndarray  # float32 [K, 4] level-0 x, y, class index, probability
    tiles: int
    slide_mpp: float
    level_dimensions: list[tuple[int, int]]
    thumbnail: np.ndarray
    thumb_downsample: float
    tissue_mm2: float
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"


class TileOwner:
    """Which detections of a tile are its own: the tile's core, edges where no neighbour is.

    Args:
        grid: level-0 top-left corners of the tiles (a lattice of step `step0`).
        tile0: tile side in level-0 px.
        step0: grid step in level-0 px.
    """

    def __init__(self, grid: np.ndarray, tile0: float, step0: float) -> None:
        self.tiles = {(int(x), int(y)) for x, y in grid}
        self.tile0, self.step0 = float(tile0), float(step0)
        self.margin = (self.tile0 - self.step0) / 2

    def bounds(self, x: int, y: int) -> tuple[float, float, float, float]:
        """Level-0 `[x_lo, x_hi) x [y_lo, y_hi)` of the core of the tile at (x, y)."""
        s, m, has = int(self.step0), self.margin, self.tiles.__contains__
        x_lo = x + m if has((x - s, y)) else -np.inf
        x_hi = x + m + self.step0 if has((x + s, y)) else np.inf
        y_lo = y + m if has((x, y - s)) else -np.inf
        y_hi = y + m + self.step0 if has((x, y + s)) else np.inf
        return x_lo, x_hi, y_lo, y_hi

    def keep(self, x: int, y: int, cells0: np.ndarray) -> np.ndarray:
        """The rows of level-0 `cells0` (x, y first) inside the tile's core."""
        x_lo, x_hi, y_lo, y_hi = self.bounds(x, y)
        cx, cy = cells0[:, 0], cells0[:, 1]
        return cells0[(cx >= x_lo) & (cx < x_hi) & (cy >= y_lo) & (cy < y_hi)]


def ready_net(model: Any, device: Any, tile_px: int) -> Any:
    """The model as the engine runs it: eager on a CPU, channels-last on a GPU (`prepare_model`).

    A heatmap U-Net on 2 cores, 256 px tiles (ms per tile, quiet machine): eager 13 in calls of
    1-2 tiles, 26 in calls of 8 (a batch's full-resolution activations overflow the caches);
    the frozen TorchScript trace 15-20 in calls of 1-2, 33 in calls of 8.
    """
    from autoscope.infer.batching import prepare_model

    return prepare_model(model, device, tile_px if device.type != "cpu" else None)


def heat_probs(net: Any, patches: np.ndarray, device: Any) -> Any:
    """Sigmoid heatmaps float32 `[N, C, H, W]` (a torch tensor) of a uint8 `[N, H, W, 3]` batch.

    On a CPU in calls of about `segment.CPU_CALL_PX` pixels (see `ready_net`); on a GPU one
    bf16 call.
    """
    import torch

    from autoscope.infer.segment import CPU_CALL_PX

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(patches))
        if device.type != "cpu":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return torch.sigmoid(net(x.to(device, non_blocking=True)).float())
        step = max(1, CPU_CALL_PX // max(1, x.shape[1] * x.shape[2]))
        parts = [torch.sigmoid(net(x[i : i + step]).float()) for i in range(0, len(x), step)]
        return torch.cat(parts)


def tile_cells(heat: Any, settings: DetSettings, mpp: float) -> list[np.ndarray]:
    """Cells (tile px: x, y, class, probability) of every tile of a heatmap batch."""
    from autoscope.models.det_points import find_peaks, nms_distance

    peaks = find_peaks(heat, threshold=settings.threshold)
    return [nms_distance(p, settings.nms_um / mpp) for p in peaks]


def to_level0(cells: np.ndarray, x: int, y: int, px0: float) -> np.ndarray:
    """Tile-pixel cells of the tile at level-0 (x, y) in level-0 pixels."""
    out = cells.copy()
    out[:, 0] = x + cells[:, 0] * px0
    out[:, 1] = y + cells[:, 1] * px0
    return out


def merge(cells: np.ndarray, radius0: float) -> np.ndarray:
    """The final merge across tile borders (distance NMS in level-0 px), sorted by y, x."""
    from autoscope.models.det_points import nms_distance

    kept = nms_distance(cells, radius0)
    return kept[np.lexsort((kept[:, 0], kept[:, 1]))] if len(kept) else kept


def _open(path: str, spec: InferSpec, settings: DetSettings, mpp_x: float | None) -> tuple:
    """Grid, thumbnail, its downsample, level dimensions, slide MPP and tissue area (mm²)."""
    from autoscope.infer.source import SlideError, check_resolution, open_slide, tissue_grid

    reader = open_slide(path, mpp_x)
    try:
        slide_mpp = check_resolution(reader, spec.mpp, path)
        detector = spec.detector().mask
        grid, thumb, ds = tissue_grid(
            reader,
            mpp=spec.mpp,
            patch_px=settings.tile_px,
            stride_px=settings.step_px,
            tissue=detector,
            min_tissue=spec.min_tissue,
            cover_edges=True,
        )
        tissue_mm2 = float(np.asarray(detector(thumb), bool).sum()) * (ds * slide_mpp) ** 2 / 1e6
        dims = [tuple(int(v) for v in d) for d in reader.level_dimensions]
        if max(thumb.shape[:2]) < 1024:
            thumb = reader.thumbnail(1024)
            ds = max(dims[0][0] / thumb.shape[1], dims[0][1] / thumb.shape[0])
    except SlideError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file fails inside any backend call
        raise SlideError(f"cannot read slide {path}: {type(e).__name__}: {e}") from None
    finally:
        reader.close()
    return grid, thumb, ds, dims, slide_mpp, tissue_mm2


def run_tiles(
    model: Any,
    slide_path: str | Path,
    spec: InferSpec,
    settings: DetSettings,
    *,
    mpp_x: float | None = None,
    coords: np.ndarray | None = None,
) -> Found:
    """Read and run every tissue tile of one slide; keep each tile's own cells, then merge.

    `coords` (level-0 corners) replaces the tissue grid (benchmarks).

    Raises:
        SlideError: the slide cannot be read or does not fit the model's resolution.
    """
    from autoscope.infer.batching import pick_device
    from autoscope.infer.engine import _progress
    from autoscope.infer.source import SlideError, level0_px
    from autoscope.slides.parallel import iter_batches

    path, t0 = str(slide_path), time.perf_counter()
    grid, thumb, ds, dims, slide_mpp, tissue_mm2 = _open(path, spec, settings, mpp_x)
    grid = grid if coords is None else np.asarray(coords, np.int64)
    px0 = float(spec.mpp) / slide_mpp  # level-0 px per model px
    tile0 = level0_px(slide_mpp, spec.mpp, settings.tile_px)
    owner = TileOwner(grid, tile0, level0_px(slide_mpp, spec.mpp, settings.step_px))
    dev = pick_device(spec.device)
    net = ready_net(model, dev, settings.tile_px)
    t1, model_s, kept = time.perf_counter(), 0.0, []
    bar = _progress(len(grid), Path(path).name, spec.progress)
    try:
        if len(grid):
            batches = iter_batches(
                path,
                grid,
                spec.mpp,
                settings.tile_px,
                spec.batch_size,
                spec.workers,
                spec.queue_depth(),
                mpp_x=mpp_x,
            )
            for patches, corners in batches:
                tm = time.perf_counter()
                heat = heat_probs(net, patches, dev)
                if heat.shape[1] != len(spec.classes):
                    raise ValueError(
                        f"model returns {heat.shape[1]} heatmaps, card lists {len(spec.classes)}"
                    )
                found = tile_cells(heat, settings, spec.mpp)
                model_s += time.perf_counter() - tm
                for (x, y), cells in zip(corners.tolist(), found, strict=True):
                    kept.append(owner.keep(x, y, to_level0(cells, x, y, px0)))
                if bar is not None:
                    bar.update(len(patches))
    except (OSError, ValueError) as e:
        raise SlideError(f"error running tiles of {path}: {type(e).__name__}: {e}") from None
    finally:
        if bar is not None:
            bar.close()
    cells = np.concatenate(kept) if kept else np.zeros((0, 4), np.float32)
    cells = merge(cells, settings.merge_um / slide_mpp)
    t2 = time.perf_counter()
    timings = {"open_tissue_s": t1 - t0, "predict_s": t2 - t1, "model_busy_s": model_s}
    return Found(path, cells, len(grid), slide_mpp, dims, thumb, ds, tissue_mm2, timings, str(dev))


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
    """Detect every cell of one slide and write its outputs atomically (see `det_writers`).

    Writes `out_dir/<name>/`: `cells.geojson` (QuPath detections; `.gz` too when many),
    `cells.parquet`, `heatmap.png` (cell density), `overview.png` and last `summary.json`.

    Raises:
        SlideError: the slide cannot be read or does not fit the model's resolution.
        UserError: a bad `infer.detect` setting.
    """
    from autoscope.infer.det_writers import write_outputs

    settings = DetSettings.from_spec(spec)
    found = run_tiles(model, slide_path, spec, settings, mpp_x=mpp_x)
    info = {"mpp": spec.mpp, "tile_px": settings.tile_px, "overlap_px": settings.overlap_px}
    return write_outputs(
        found,
        Path(out_dir),
        spec.class_dicts,
        settings,
        model_info={**info, **spec.model_info},
        name=name,
        root=root,
        slide_id=slide_id,
    )


def predict_patches(model: Any, x: np.ndarray, spec: InferSpec) -> list[dict[str, Any]]:
    """Cells of a batch of patches (the bento's detection API), in patch pixels.

    Returns:
        per patch `{"cells": [{"x", "y", "class", "probability"}]}`.

    Raises:
        ValueError: not a uint8 batch of the card's patch size.
    """
    from autoscope.infer.batching import pick_device, uint8_patches

    arr = uint8_patches(x, spec.patch_px)
    settings = DetSettings.from_spec(spec)
    dev = pick_device(spec.device)
    heat = heat_probs(ready_net(model, dev, spec.patch_px), arr, dev)
    names = [c.name for c in spec.classes]
    return [
        {
            "cells": [
                {
                    "x": float(c[0]),
                    "y": float(c[1]),
                    "class": names[int(c[2])],
                    "probability": float(c[3]),
                }
                for c in cells
            ]
        }
        for cells in tile_cells(heat, settings, spec.mpp)
    ]


def settings_keys() -> dict[str, Any]:
    """The `infer.detect` keys and their defaults (docs, tests)."""
    from autoscope.infer.det_settings import SETTINGS

    return dict(SETTINGS)
