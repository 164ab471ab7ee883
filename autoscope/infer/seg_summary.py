"""The per-slide files of a segmentation run, written into its temporary folder, summary last."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from autoscope.infer.raster import write_png
from autoscope.infer.seg_writers import (
    class_polygons,
    label_pictures,
    qupath_annotations,
    write_label_tiff,
)
from autoscope.infer.writers import slide_record
from autoscope.portable import portable_path

FILES = {  # the per-slide outputs of a segmentation run
    "labels_tif": "labels.tif",
    "geojson": "regions.geojson",
    "heatmap_png": "heatmap.png",
    "labels_png": "labels.png",
    "overview": "overview.png",
    "summary": "summary.json",
}


def write_outputs(
    run: Any,
    sink: Any,
    tmp: Path,
    spec: Any,
    settings: Any,
    final: Path,
    *,
    root: str | Path | None = None,
    slide_id: str | None = None,
) -> dict[str, Any]:
    """Label TIFF, QuPath polygons, pictures and `summary.json` (last) of one stitched slide.

    Args:
        run: the `segment.Stitched` of the slide.
        sink: its `segment.MapSink` (label and confidence memory maps, pixel counts).
        tmp: the slide's temporary output folder (renamed to `final` by the caller).
        spec: the inference spec (classes, model info).
        settings: the `SegSettings`.
        final: where the folder will be (recorded in the summary).
        root: the workspace: recorded paths are relative to it.
        slide_id: the slide's registry id.
    """
    from autoscope.infer.writers import _json, write_overview

    t0 = time.perf_counter()
    classes = spec.class_dicts
    labels, confidence = sink.labels, sink.confidence
    map_mpp = run.map_px0 * run.slide_mpp
    tiff = write_label_tiff(labels, map_mpp, tmp / FILES["labels_tif"])
    px0_mm2 = (run.slide_mpp / 1000.0) ** 2  # one level-0 pixel in mm²
    polygons = class_polygons(
        labels,
        len(classes),
        px0=run.map_px0,
        simplify_px0=settings.simplify_um / run.slide_mpp,
        min_area_px0=settings.min_area_um2 / run.slide_mpp**2,
    )
    _json(qupath_annotations(polygons, classes, px0_mm2), tmp / FILES["geojson"])
    map_per_thumb = run.thumb_downsample / run.map_px0
    heat, coloured = label_pictures(labels, confidence, run.thumbnail, map_per_thumb, classes)
    write_png(heat, tmp / FILES["heatmap_png"])
    write_png(coloured, tmp / FILES["labels_png"])
    pixel_mm2 = (map_mpp / 1000.0) ** 2
    areas = {c["name"]: float(n) * pixel_mm2 for c, n in zip(classes, sink.counts, strict=True)}
    picture = SimpleNamespace(thumbnail=run.thumbnail, slide_path=run.slide_path)
    write_overview(picture, coloured, classes, areas, tmp / FILES["overview"])
    del labels, confidence
    sink.labels = sink.confidence = None
    for f in ("labels.npy", "confidence.npy"):
        (tmp / f).unlink(missing_ok=True)
    timings = dict(run.timings)
    timings["write_s"] = time.perf_counter() - t0
    timings["tiles_per_s"] = run.tiles / timings["predict_s"] if timings.get("predict_s") else None
    total = int(sink.counts.sum())
    summary = {
        "task": spec.task,
        **slide_record(run, spec.model_info, final.name, root=root, slide_id=slide_id),
        "tiles": {
            "total": int(run.tiles),
            "tile_px": settings.tile_px,
            "overlap_px": settings.overlap_px,
            "window": settings.window,
        },
        "areas_mm2": areas,
        "tissue_area_mm2": total * pixel_mm2,
        "class_fractions": {
            c["name"]: (float(n) / total if total else 0.0)
            for c, n in zip(classes, sink.counts, strict=True)
        },
        "polygons": {
            classes[k]["name"]: len(getattr(g, "geoms", [g])) for k, g in polygons.items()
        },
        "label_tiff": tiff,
        "timings": timings,
        "device": run.device,
        "files": dict(FILES),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "out_dir": portable_path(final, root),
    }
    _json(summary, tmp / FILES["summary"])  # last: the folder is published with it
    return summary
