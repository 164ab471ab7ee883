"""The overlays a slide has: tissue mask, dataset patches, inference heatmaps and GeoJSON objects.

Image overlays (mask, heatmap) are one PNG laid over the whole slide; object overlays are
`FeatureLayer`s (tiles zoomed out, vectors zoomed in), indexed once and kept in a small LRU.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autoscope.studio import stores
from autoscope.studio.overlays import FeatureLayer, patches_collection, read_geojson
from autoscope.studio.settings import StudioContext

_LAYERS: OrderedDict[tuple, FeatureLayer] = OrderedDict()
_LOCK = threading.Lock()
KEEP_LAYERS = 16  # indexed object layers kept in memory


def available(ctx: StudioContext, row: Any) -> list[dict[str, Any]]:
    """Every overlay of a registered slide: `{id, label, kind (image|objects), ...}`."""
    out: list[dict[str, Any]] = []
    mask = row.get("tissue_mask")
    if isinstance(mask, str) and Path(mask).is_file():
        out.append({"id": "tissue", "label": "tissue mask", "kind": "image"})
    from autoscope.datasets.store import datasets_using_slide

    for name in datasets_using_slide(ctx.stores, str(row["slide_id"])):
        out.append({"id": f"dataset:{name}", "label": f"dataset {name}", "kind": "objects"})
    for d in stores.infer_dirs(ctx, str(row["name"])):
        tag = f"{d.parent.parent.name}/{d.parent.name}"
        if (d / "heatmap.tif").is_file():
            out.append({"id": f"heatmap:{tag}", "label": f"heatmap {tag}", "kind": "image"})
        for g in sorted([*d.glob("*.geojson"), *d.glob("*.geojson.gz")]):
            out.append(
                {"id": f"geojson:{tag}:{g.name}", "label": f"{g.name} {tag}", "kind": "objects"}
            )
    for g in loop_queues(ctx, str(row["name"])):  # the loop's review queues, regions to label
        kind, dataset, rnd = g.parts[-4:-1]
        what = "review queue" if kind == "refine" else "regions to label"
        label = f"{what} {dataset} {rnd.replace('_', ' ')}"
        out.append({"id": f"loop:{kind}/{dataset}/{rnd}", "label": label, "kind": "objects"})
    return out


def loop_queues(ctx: StudioContext, slide_name: str) -> list[Path]:
    """`outputs/<project>/loop/<refine|select>/<dataset>/round_<N>/<slide>.geojson`, in order."""
    root = ctx.stores.outputs / "loop"
    found = [*root.glob(f"refine/*/round_*/{slide_name}.geojson")]
    found += root.glob(f"select/*/round_*/{slide_name}.geojson")
    return sorted(found, key=lambda g: (g.parts[-4], g.parts[-3], int(g.parts[-2][6:])))


def _infer_dir(ctx: StudioContext, row: Any, tag: str) -> Path:
    for d in stores.infer_dirs(ctx, str(row["name"])):
        if f"{d.parent.parent.name}/{d.parent.name}" == tag:
            return d
    raise KeyError(tag)


def image_overlay(ctx: StudioContext, row: Any, layer_id: str) -> tuple[np.ndarray, float]:
    """An image overlay's RGBA pixels and its width in level-0 pixels."""
    if layer_id == "tissue":
        with Image.open(str(row["tissue_mask"])) as m:
            on = np.asarray(m.convert("L")) > 0
        rgba = np.zeros((*on.shape, 4), np.uint8)
        rgba[on] = (46, 204, 113, 140)
        return rgba, float(row["width_px"])
    if layer_id.startswith("heatmap:"):
        import tifffile

        d = _infer_dir(ctx, row, layer_id.split(":", 1)[1])
        with tifffile.TiffFile(d / "heatmap.tif") as tif:
            page = tif.pages[0]
            rgba = page.asarray()
            res = page.tags.get("XResolution")
        px_per_cm = res.value[0] / res.value[1] if res else 0
        slide_mpp = float(row["mpp_x"]) if row.get("mpp_x") else 0
        if px_per_cm and slide_mpp:
            return rgba, rgba.shape[1] * (1e4 / px_per_cm) / slide_mpp
        return rgba, float(row["width_px"])
    raise KeyError(layer_id)


def object_layer(ctx: StudioContext, row: Any, layer_id: str) -> FeatureLayer:
    """The indexed objects of an object overlay (cached by file and modification time)."""
    colors = {c.name: c.color for c in ctx.project.classes}
    if layer_id.startswith("dataset:"):
        from autoscope.datasets.store import dataset_dir

        d = dataset_dir(ctx.stores, layer_id.split(":", 1)[1])
        src, key = d / "manifest.parquet", layer_id
    elif layer_id.startswith("geojson:"):
        _, tag, fname = layer_id.split(":", 2)
        src = _infer_dir(ctx, row, tag) / fname
        if "/" in fname or not src.is_file():
            raise KeyError(layer_id)
        key = layer_id
    elif layer_id.startswith("loop:"):
        found = {f"loop:{'/'.join(g.parts[-4:-1])}": g for g in loop_queues(ctx, str(row["name"]))}
        if layer_id not in found:
            raise KeyError(layer_id)
        src, key = found[layer_id], layer_id
    else:
        raise KeyError(layer_id)
    cache_key = (str(row["slide_id"]), key, src.stat().st_mtime_ns)
    with _LOCK:
        if cache_key in _LAYERS:
            _LAYERS.move_to_end(cache_key)
            return _LAYERS[cache_key]
    if layer_id.startswith("dataset:"):
        import pandas as pd

        from autoscope.slides.units import level0_px

        m = pd.read_parquet(src)
        m = m[m["slide_id"].astype(str) == str(row["slide_id"])]
        slide_mpp = float(row["mpp_x"] or 0)
        sides = (
            {
                str(v): level0_px(slide_mpp, float(v), int(m["patch_px"].iloc[0]))
                for v in m["mpp"].unique()
            }
            if len(m) and slide_mpp
            else {}
        )
        layer = FeatureLayer.from_collection(patches_collection(m, sides, colors), colors)
    else:
        layer = FeatureLayer.from_collection(read_geojson(src), colors)
    with _LOCK:
        _LAYERS[cache_key] = layer
        while len(_LAYERS) > KEEP_LAYERS:
            _LAYERS.popitem(last=False)
    return layer
