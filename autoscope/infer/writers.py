"""Per-slide output folder, written atomically: tiles, heatmaps, GeoJSON, overview, summary."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.atomic import atomic_dir
from autoscope.infer.raster import (
    class_colors,
    grid_maps,
    heatmap_image,
    overlay_rgba,
    write_overlay_tiff,
    write_png,
)
from autoscope.infer.regions import class_regions
from autoscope.portable import portable_path

SUMMARY = "summary.json"  # written last: its presence marks a slide as done
FILES = {
    "tiles": "tiles.parquet",
    "heatmap_png": "heatmap.png",
    "heatmap_tif": "heatmap.tif",
    "geojson": "regions.geojson",
    "overview": "overview.png",
    "summary": SUMMARY,
}


def is_done(slide_dir: Path) -> bool:
    """Whether a slide's output folder is complete (resume skips it)."""
    return (Path(slide_dir) / SUMMARY).is_file()


def write_tiles(pred: Any, classes: Sequence[dict[str, Any]], path: Path) -> None:
    """`tiles.parquet`: x, y (level-0), class, class_idx and `prob_<class>` per class."""
    import pandas as pd

    top = pred.probs.argmax(1) if len(pred.probs) else np.zeros(0, np.int64)
    names = np.array([c["name"] for c in classes], dtype=object)
    cols: dict[str, Any] = {
        "x": pred.coords[:, 0],
        "y": pred.coords[:, 1],
        "class": names[top] if len(top) else np.array([], dtype=object),
        "class_idx": top.astype(np.int16),
    }
    for k, c in enumerate(classes):
        cols[f"prob_{c['name']}"] = pred.probs[:, k].astype(np.float32)
    pd.DataFrame(cols).to_parquet(path, index=False)


def write_overview(
    pred: Any,
    heat: np.ndarray,
    classes: Sequence[dict[str, Any]],
    areas: dict[str, float],
    path: Path,
) -> None:
    """`overview.png`: thumbnail | heatmap | legend with tile counts and areas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colors = class_colors(classes) / 255.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.5), gridspec_kw={"width_ratios": [4, 4, 2]})
    axes[0].imshow(pred.thumbnail)
    axes[0].set_title(Path(pred.slide_path).name, fontsize=9)
    axes[1].imshow(heat)
    axes[1].set_title("predicted classes (opacity = probability)", fontsize=9)
    handles = [
        Patch(color=colors[k], label=f"{c['name']}: {areas.get(c['name'], 0.0):.3f} mm²")
        for k, c in enumerate(classes)
    ]
    axes[2].legend(handles=handles, loc="center left", frameon=False, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, default=float))


def slide_record(
    run: Any,
    model_info: dict[str, Any],
    name: str,
    *,
    root: str | Path | None = None,
    slide_id: str | None = None,
) -> dict[str, Any]:
    """The `slide` and `model` entries every family's summary starts with: no host path (the
    slide and absolute `model_info` paths relative to `root`, else file names).

    Args:
        run: what the engine read (`slide_path`, `level_dimensions`, `slide_mpp`).
    """
    return {
        "slide": {
            "name": name,
            "slide_id": slide_id,
            "path": portable_path(run.slide_path, root),
            "width_px": run.level_dimensions[0][0],
            "height_px": run.level_dimensions[0][1],
            "level_count": len(run.level_dimensions),
            "mpp": run.slide_mpp,
        },
        "model": {  # e.g. the model folder: relative to the workspace too
            k: portable_path(v, root) if isinstance(v, str) and os.path.isabs(v) else v
            for k, v in model_info.items()
        },
    }


def summarise(
    pred: Any,
    classes: Sequence[dict[str, Any]],
    model_info: dict[str, Any],
    name: str,
    *,
    root: str | Path | None = None,
    slide_id: str | None = None,
) -> dict[str, Any]:
    """Tile counts, class areas (mm²), mean probabilities, slide info, timings and model info.

    The slide is named by `name`, its registry `slide_id` (when known) and its path relative to
    `root` (the workspace; the file name when it lies elsewhere or no root is given); absolute
    paths in `model_info` (the model folder) likewise: a summary holds no host path. `finished`
    is a time stamp of the run (metadata: no version is hashed from a summary).
    """
    side_um = min(pred.tile0_px, pred.step0_px) * pred.slide_mpp
    tile_mm2 = side_um**2 / 1e6
    top = pred.probs.argmax(1) if len(pred.probs) else np.zeros(0, np.int64)
    counts = {c["name"]: int((top == k).sum()) for k, c in enumerate(classes)}
    mean_p = {
        c["name"]: (float(pred.probs[top == k, k].mean()) if counts[c["name"]] else None)
        for k, c in enumerate(classes)
    }
    n = int(len(pred.coords))
    t = pred.timings
    return {
        **slide_record(pred, model_info, name, root=root, slide_id=slide_id),
        "tiles": {"total": n, "per_class": counts, "tile_area_mm2": tile_mm2},
        "areas_mm2": {k: v * tile_mm2 for k, v in counts.items()},
        "tissue_area_mm2": n * tile_mm2,
        "mean_probability": mean_p,
        "timings": {**t, "tiles_per_s": n / t["predict_s"] if t.get("predict_s") else None},
        "device": pred.device,
        "files": dict(FILES),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_outputs(
    pred: Any,
    out_dir: Path,
    classes: Sequence[dict[str, Any]],
    *,
    model_info: dict[str, Any] | None = None,
    name: str | None = None,
    root: str | Path | None = None,
    slide_id: str | None = None,
) -> dict[str, Any]:
    """Write every output of one slide into a temporary folder, then swap it into place.

    Paths in the summary are relative to `root` (the workspace), see `summarise`.
    """
    name = name or Path(pred.slide_path).stem
    final = Path(out_dir) / name
    t0 = time.perf_counter()
    with atomic_dir(final) as tmp:
        write_tiles(pred, classes, tmp / FILES["tiles"])
        idx, prob = grid_maps(pred)
        rgba = overlay_rgba(idx, prob, class_colors(classes))
        heat = heatmap_image(pred, rgba)
        write_png(heat, tmp / FILES["heatmap_png"])
        overlay = write_overlay_tiff(pred, rgba, tmp / FILES["heatmap_tif"])
        geo = class_regions(
            pred.coords,
            pred.probs,
            classes,
            tile0=pred.tile0_px,
            step0=pred.step0_px,
            slide_mpp=pred.slide_mpp,
        )
        _json(geo, tmp / FILES["geojson"])
        summary = summarise(
            pred, classes, dict(model_info or {}), name, root=root, slide_id=slide_id
        )
        summary["overlay"] = overlay
        write_overview(pred, heat, classes, summary["areas_mm2"], tmp / FILES["overview"])
        summary["timings"]["write_s"] = time.perf_counter() - t0
        summary["out_dir"] = portable_path(final, root)
        _json(summary, tmp / SUMMARY)  # last: the folder is published with it (done marker)
    return summary
