"""Per-slide detection outputs, written atomically: QuPath detections, density map, summary.

`cells.geojson` holds one QuPath detection per cell (`objectType: detection`, a circle of
`outline_um` round the centre, `classification` {name, colour}, `measurements` {probability}),
streamed feature by feature (memory flat); `cells.geojson.gz` beside it when there are at least
`gzip_min_cells`. `cells.parquet` the same as a table; `heatmap.png` the cell density (cells per
mm² in `density_um` squares) over the thumbnail; `overview.png` thumbnail with the cells | density
| counts and densities; `summary.json` last (its presence marks the slide done).
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.atomic import atomic_dir
from autoscope.infer.raster import class_colors, write_png
from autoscope.infer.writers import slide_record
from autoscope.portable import portable_path

SUMMARY = "summary.json"
FILES = {
    "geojson": "cells.geojson",
    "table": "cells.parquet",
    "heatmap_png": "heatmap.png",
    "overview": "overview.png",
    "summary": SUMMARY,
}


def write_geojson(
    cells: np.ndarray, classes: Sequence[dict[str, Any]], radius0: float, path: Path
) -> None:
    """QuPath detections, one Feature per cell, streamed into `path`."""
    rgb = class_colors(classes).astype(int).tolist()
    theta = np.linspace(0, 2 * np.pi, 9)[:-1]
    ring = np.stack([np.cos(theta), np.sin(theta)], 1) * radius0
    with open(path, "w") as f:
        f.write('{"type": "FeatureCollection", "features": [')
        for i, (x, y, c, p) in enumerate(cells.tolist()):
            pts = np.round(ring + [x, y], 1).tolist()
            feat = {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[*pts, pts[0]]]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": classes[int(c)]["name"], "color": rgb[int(c)]},
                    "measurements": {"probability": round(float(p), 4)},
                },
            }
            f.write(("," if i else "") + "\n" + json.dumps(feat))
        f.write("\n]}\n")


def write_table(cells: np.ndarray, classes: Sequence[dict[str, Any]], path: Path) -> None:
    """`cells.parquet`: x, y (level-0 px), class, class_idx, probability."""
    import pandas as pd

    names = np.array([c["name"] for c in classes], dtype=object)
    idx = cells[:, 2].astype(np.int64)
    pd.DataFrame(
        {
            "x": cells[:, 0],
            "y": cells[:, 1],
            "class": names[idx] if len(idx) else [],
            "class_idx": idx.astype(np.int16),
            "probability": cells[:, 3],
        }
    ).to_parquet(path, index=False)


def density_map(found: Any, bin0: float) -> tuple[np.ndarray, float]:
    """Cells per mm² in squares of `bin0` level-0 px over the slide, and the max."""
    w, h = found.level_dimensions[0]
    shape = (max(1, int(np.ceil(h / bin0))), max(1, int(np.ceil(w / bin0))))
    counts = np.zeros(shape, np.float64)
    if len(found.cells):
        j = np.clip((found.cells[:, 1] / bin0).astype(int), 0, shape[0] - 1)
        i = np.clip((found.cells[:, 0] / bin0).astype(int), 0, shape[1] - 1)
        np.add.at(counts, (j, i), 1)
    dens = counts / ((bin0 * found.slide_mpp) ** 2 / 1e6)
    return dens, float(dens.max()) if dens.size else 0.0


def density_picture(found: Any, dens: np.ndarray, vmax: float) -> np.ndarray:
    """The density (magma colours, transparent where 0) blended over the thumbnail."""
    import matplotlib
    from PIL import Image

    th = found.thumbnail
    rgba = matplotlib.colormaps["magma"](dens / vmax if vmax > 0 else dens)
    up = np.asarray(
        Image.fromarray((rgba * 255).astype(np.uint8)).resize(
            (th.shape[1], th.shape[0]), Image.NEAREST
        )
    )
    alpha = np.where(
        np.asarray(
            Image.fromarray((dens > 0).astype(np.uint8) * 255).resize(
                (th.shape[1], th.shape[0]), Image.NEAREST
            )
        )
        > 0,
        0.7,
        0.0,
    )[..., None]
    return (th * (1 - alpha) + up[..., :3] * alpha).astype(np.uint8)


def cells_picture(found: Any, classes: Sequence[dict[str, Any]]) -> np.ndarray:
    """The thumbnail with a dot per cell in its class colour."""
    img = found.thumbnail.copy()
    if len(found.cells):
        colours = class_colors(classes).astype(np.uint8)
        x = np.clip((found.cells[:, 0] / found.thumb_downsample).astype(int), 0, img.shape[1] - 1)
        y = np.clip((found.cells[:, 1] / found.thumb_downsample).astype(int), 0, img.shape[0] - 1)
        rgb = colours[found.cells[:, 2].astype(int)]
        for dy in (-1, 0, 1):  # 3x3 dots: visible on a 1024 px picture
            for dx in (-1, 0, 1):
                img[np.clip(y + dy, 0, img.shape[0] - 1), np.clip(x + dx, 0, img.shape[1] - 1)] = (
                    rgb
                )
    return img


def write_overview(
    found: Any, classes: Sequence[dict[str, Any]], heat: np.ndarray, summary: dict, path: Path
) -> None:
    """`overview.png`: cells | density | legend with counts and densities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = class_colors(classes) / 255.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.5), gridspec_kw={"width_ratios": [4, 4, 2]})
    axes[0].imshow(cells_picture(found, classes))
    axes[0].set_title(
        f"{Path(found.slide_path).name}: {summary['cells']['total']} cells", fontsize=9
    )
    axes[1].imshow(heat)
    axes[1].set_title("cell density (cells/mm², magma)", fontsize=9)
    per, dens = summary["cells"]["per_class"], summary["cells"]["per_mm2"]
    handles = [
        Patch(color=colours[k], label=f"{c['name']}: {per[c['name']]} ({dens[c['name']]:.0f}/mm²)")
        for k, c in enumerate(classes)
    ]
    axes[2].legend(handles=handles, loc="center left", frameon=False, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def summarise(
    found: Any,
    classes: Sequence[dict[str, Any]],
    model_info: dict,
    name: str,
    *,
    root: Any = None,
    slide_id: str | None = None,
) -> dict[str, Any]:
    """Counts per class and per mm² of tissue, tiles, areas, slide and model info, timings."""
    idx = found.cells[:, 2].astype(int) if len(found.cells) else np.zeros(0, int)
    per = {c["name"]: int((idx == k).sum()) for k, c in enumerate(classes)}
    area = max(found.tissue_mm2, 1e-12)
    t = found.timings
    return {
        **slide_record(found, model_info, name, root=root, slide_id=slide_id),
        "task": "cell_detection",
        "tiles": {"total": int(found.tiles)},
        "cells": {
            "total": int(len(found.cells)),
            "per_class": per,
            "per_mm2": {k: v / area for k, v in per.items()},
            "mean_probability": float(found.cells[:, 3].mean()) if len(found.cells) else None,
        },
        "areas_mm2": {"tissue": found.tissue_mm2},
        "tissue_area_mm2": found.tissue_mm2,
        "timings": {
            **t,
            "tiles_per_s": found.tiles / t["predict_s"] if t.get("predict_s") else None,
        },
        "device": found.device,
        "files": dict(FILES),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_outputs(
    found: Any,
    out_dir: Path,
    classes: Sequence[dict[str, Any]],
    settings: Any,
    *,
    model_info: dict | None = None,
    name: str | None = None,
    root: Any = None,
    slide_id: str | None = None,
) -> dict[str, Any]:
    """Write every output of one slide into a temporary folder, then swap it into place."""
    name = name or Path(found.slide_path).stem
    final, t0 = Path(out_dir) / name, time.perf_counter()
    with atomic_dir(final) as tmp:
        write_geojson(
            found.cells, classes, settings.outline_um / found.slide_mpp, tmp / FILES["geojson"]
        )
        files = dict(FILES)
        if len(found.cells) >= settings.gzip_min_cells:
            with (
                open(tmp / FILES["geojson"], "rb") as src,
                gzip.open(tmp / "cells.geojson.gz", "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
            files["geojson_gz"] = "cells.geojson.gz"
        write_table(found.cells, classes, tmp / FILES["table"])
        dens, vmax = density_map(found, settings.density_um / found.slide_mpp)
        heat = density_picture(found, dens, vmax)
        write_png(heat, tmp / FILES["heatmap_png"])
        summary = summarise(
            found, classes, dict(model_info or {}), name, root=root, slide_id=slide_id
        )
        summary["files"] = files
        summary["density_max_per_mm2"] = vmax
        write_overview(found, classes, heat, summary, tmp / FILES["overview"])
        summary["timings"]["write_s"] = time.perf_counter() - t0
        summary["out_dir"] = portable_path(final, root)
        (tmp / SUMMARY).write_text(
            json.dumps(summary, indent=1, default=float)
        )  # last: done marker
    return summary
