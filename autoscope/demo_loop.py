"""The demo's closing of the loop: labels it corrupts on purpose, and an annotator that fixes them.

`make demo` generates three slides whose smallest region is annotated with the wrong class
(`corrupt_region`, recorded in `data/demo/raw/corrupted.json`). After `dvc repro`, `check_refine`
measures how many of those patches `autoscope refine` put at the top of its review queue, and
`annotate` plays the pathologist: it opens the queue's QuPath files, gives each queued patch its
true class (the synthetic slide's truth mask) and exports them to the corrections folder
(`corrections/<dataset>/round_<N>/`), so the next `dvc repro` builds the corrected dataset
version, retrains and archives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from autoscope.atomic import write_json

CORRUPTED = "corrupted.json"  # which regions the demo mislabels on purpose


def corrupt_region(geojson: Path, record: Path) -> None:
    """Give the smallest region of a slide's GeoJSON the other class: an annotator's slip.

    The slide's pixels (and its truth mask) keep the true class, so the patches cut there carry
    a wrong label; `record` names the region (slide, feature id, given and true class, polygon).
    """
    from shapely.geometry import shape

    from autoscope.slides.synth import CLASSES

    doc = json.loads(geojson.read_text())
    feats = doc["features"]
    i = min(range(len(feats)), key=lambda k: shape(feats[k]["geometry"]).area)
    cls = feats[i]["properties"]["classification"]
    true = cls["name"]
    given, color = next(c for c in CLASSES.values() if c[0] != true)
    cls.update(name=given, color=color)
    write_json(geojson, doc)
    done = json.loads(record.read_text()) if record.is_file() else []
    done = [d for d in done if d["slide"] != geojson.stem]
    entry = {"slide": geojson.stem, "feature": feats[i]["id"], "given": given, "true": true}
    done.append({**entry, "geometry": feats[i]["geometry"]})
    write_json(record, sorted(done, key=lambda d: d["slide"]))


def corrupted_patches(manifest: Any, record: Path) -> set[str]:
    """Patch ids of the manifest whose centre lies in a corrupted region (and carry its label)."""
    from shapely.geometry import Point, shape

    out: set[str] = set()
    for c in json.loads(record.read_text()) if record.is_file() else []:
        poly = shape(c["geometry"])
        rows = manifest[(manifest["slide"] == c["slide"]) & (manifest["label"] == c["given"])]
        for r in rows.itertuples():
            half = int(r.patch_px) * float(r.mpp) / 0.5 / 2  # level-0 px of the 0.5 um/px slides
            if poly.contains(Point(int(r.x) + half, int(r.y) + half)):
                out.add(str(r.patch_id))
    return out


def check_refine(ds_dir: Path, queue_dir: Path, record: Path, splits: tuple[str, ...]) -> dict:
    """How well the review queue finds the corrupted patches: precision at k, recall at 2k."""
    import pandas as pd

    from autoscope.datasets.store import read_manifest

    m = read_manifest(ds_dir)
    bad = corrupted_patches(m[m["split"].isin(splits)], record)
    queue = pd.read_parquet(queue_dir / "queue.parquet")["patch_id"].astype(str).tolist()
    k = len(bad)
    hits = np.array([p in bad for p in queue])
    return {
        "corrupted": k,
        "queued": len(queue),
        "precision_at_k": round(float(hits[:k].mean()) if k else 0.0, 3),
        "recall_at_2k": round(float(hits[: 2 * k].sum() / k) if k else 0.0, 3),
    }


def annotate(queue_dir: Path, out_dir: Path, truth_dir: Path, author: str) -> dict[str, int]:
    """The demo's pathologist: each queued patch (a suspect or a region to label) gets its true
    class; the files go to out_dir.

    The truth is the synthetic slide's label mask (`<slide>_mask.png` in truth_dir: 1 tumor,
    2 stroma, 0 background); a suspect whose true class is the given one is confirmed (kept as
    it is), one on background is deleted (classed `Ignore*`).
    """
    from PIL import Image
    from shapely.geometry import shape

    from autoscope.slides.synth import CLASSES

    counts = {"relabel": 0, "confirm": 0, "delete": 0, "label": 0}
    for path in sorted(queue_dir.glob("*.geojson")):
        doc = json.loads(path.read_text())
        mask_path = truth_dir / f"{path.stem}_mask.png"
        if not mask_path.is_file():
            continue
        mask = np.asarray(Image.open(mask_path))
        ds = doc["autoscope"]["width"] / mask.shape[1]
        for feat in doc["features"]:
            c = shape(feat["geometry"]).centroid
            y, x = int(c.y / ds), int(c.x / ds)
            label = int(mask[min(y, mask.shape[0] - 1), min(x, mask.shape[1] - 1)])
            props = feat["properties"]
            given = props.get("classification", {}).get("name")  # None: a region to label
            true, color = CLASSES.get(label, ("Ignore*", [128, 128, 128]))
            kind = "confirm" if true == given else "delete" if label not in CLASSES else "relabel"
            counts[kind if given or kind == "delete" else "label"] += 1
            props["classification"] = {"name": true, "color": color}
        doc["author"] = author
        write_json(out_dir / path.name, doc)
    return counts
