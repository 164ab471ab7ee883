"""QuPath GeoJSON for the loop: review/selection queues out, annotators' corrections back in.

Each queued patch is a square annotation in level-0 pixels whose `metadata` (kept by QuPath on
export) carries its `patch_id`; the collection's `autoscope` block names the slide, its level-0
size, the queue kind (`review` or `select`) and the round. On import, a queued annotation whose
class changed is a relabel, a queued review annotation that is gone (or classed `Ignore*`) is a
deletion, and an annotation without a `patch_id` (a region the annotator drew, or a selection
square they classified) adds patches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autoscope.atomic import write_json
from autoscope.datasets.annotations import UNCLASSIFIED, _class_name, _features, make_region
from autoscope.errors import UserError
from autoscope.infer.regions import annotation_feature

IGNORE = ("Ignore*", "Ignore", "delete")  # classes that mean: drop this patch


def queue_collection(
    rows: pd.DataFrame,
    *,
    kind: str,
    slide: dict[str, Any],
    side_px0: int,
    classes: list[dict[str, Any]],
    round_no: int,
    dataset: str | None,
) -> dict[str, Any]:
    """A FeatureCollection of one slide's queued patches.

    Args:
        rows: patch_id, x, y (level-0 top-left), score, and for `review` given/suggested labels.
        kind: `review` (class = given label, suggestion in name and measurements) or `select`
            (class left empty for the annotator).
        slide: {"slide", "slide_id", "width", "height"} of the slide (level 0).
        side_px0: patch side in level-0 pixels.
        classes: the project's classes ({name, color}).
        round_no: the loop round this queue belongs to.
        dataset: the dataset the queue was computed from.
    """
    from shapely.geometry import box

    index = {c["name"]: i for i, c in enumerate(classes)}
    feats = []
    for r in rows.itertuples(index=False):
        geom = box(int(r.x), int(r.y), int(r.x) + side_px0, int(r.y) + side_px0)
        score = round(float(r.score), 4)
        if kind == "review":
            k = index.get(str(r.given), 0)
            feat = annotation_feature(
                geom,
                classes[k],
                k,
                {"suspect_score": score, f"p_{r.suggested}": round(float(r.p_suggested), 4)},
            )
            feat["properties"]["name"] = f"{r.given} -> {r.suggested}? ({score:.2f})"
        else:
            feat = annotation_feature(geom, {"name": ""}, 0, {"uncertainty": score})
            feat["properties"].pop("classification")
            feat["properties"]["name"] = f"label me ({score:.2f})"
        feat["properties"]["metadata"] = {"patch_id": str(r.patch_id), "queue": kind}
        feats.append(feat)
    block = {**slide, "kind": kind, "round": int(round_no), "dataset": dataset}
    block["queued"] = [str(p) for p in rows["patch_id"]]  # absent on import: deleted (review)
    return {"type": "FeatureCollection", "autoscope": block, "features": feats}


def write_collection(path: Path, doc: dict[str, Any]) -> Path:
    """Write a FeatureCollection atomically."""
    return write_json(path, doc)


@dataclass(frozen=True)
class Edit:
    """One annotation of an imported file: a queued patch (patch_id) or a drawn region."""

    patch_id: str | None
    label: str | None  # None: unclassified (left for later)
    region: Any  # the annotation's `Region` (polygon in level-0 px)
    where: str  # "<file>: feature i" for messages
    queue: str | None  # the queue it came from (`review`, `select`), None for a drawn region


def read_corrections(path: Path) -> tuple[dict[str, Any], list[Edit], str | None]:
    """The file's `autoscope` block, its annotations and its author (None when not given).

    The author is the collection's `author` (or `autoscope.author`) field.

    Raises:
        UserError: unreadable JSON, or a feature that is not a polygon.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: malformed GeoJSON ({e})") from None
    block = doc.get("autoscope", {}) if isinstance(doc, dict) else {}
    author = (doc.get("author") if isinstance(doc, dict) else None) or block.get("author")
    edits = []
    for i, feat in enumerate(_features(path, doc)):
        where = f"{path}: feature {i}"
        geom = feat.get("geometry") if isinstance(feat, dict) else None
        if not isinstance(geom, dict) or geom.get("type") != "Polygon":
            raise UserError(f"{where}: a correction must be a Polygon annotation")
        props = feat.get("properties") or {}
        meta = props.get("metadata") or {}
        name = _class_name(props)
        label = None if name in (UNCLASSIFIED, "") else name
        region = make_region(path, f"feature {i}", label or UNCLASSIFIED, geom.get("coordinates"))
        pid = meta.get("patch_id") if isinstance(meta, dict) else None
        queue = meta.get("queue") if isinstance(meta, dict) else None
        edits.append(Edit(str(pid) if pid else None, label, region, where, queue))
    return block, edits, (str(author) if author else None)
