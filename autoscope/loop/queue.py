"""A review or selection queue on disk: table (parquet + CSV), picture sheet, QuPath GeoJSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.atomic import atomic_file, write_json
from autoscope.loop.qupath import queue_collection, write_collection
from autoscope.slides.units import level0_px

TABLE_COLUMNS = ["patch_id", "slide", "x", "y", "given", "suggested", "score"]


def picture_sheet(path: Path, images: np.ndarray, titles: list[str], columns: int = 8) -> Path:
    """A grid PNG of patches with one short title each (the top of a queue)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(images), 1)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(img)
        ax.set_title(title, fontsize=6)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def write_queue(
    out_dir: Path,
    table: pd.DataFrame,
    images: np.ndarray,
    *,
    kind: str,
    slides: pd.DataFrame,
    mpp: float,
    patch_px: int,
    classes: list[dict[str, Any]],
    round_no: int,
    dataset: str | None,
    sheet_n: int = 48,
) -> dict[str, Any]:
    """Write the queue's table, picture sheet and one GeoJSON per slide under out_dir.

    Args:
        out_dir: the round's folder.
        table: the queue, most important first (TABLE_COLUMNS, plus slide_id, p_suggested).
        images: uint8 patches of the table's rows (same order).
        kind: `review` or `select`.
        slides: registry rows (slide_id, slide, width_px, height_px, mpp_x).
        mpp: the patches' um/px; patch_px their side.
        classes: the project's classes.
        round_no: the loop round; dataset the dataset (None when selecting over raw slides).
        sheet_n: patches on the picture sheet.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / "queue.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_file(out_dir / "queue.csv") as tmp:
        table.to_csv(tmp, index=False, columns=[c for c in TABLE_COLUMNS if c in table])
    titles = [
        f"{r.given}->{r.suggested} {r.score:.2f}"
        if kind == "review"
        else f"{r.slide} {r.score:.2f}"
        for r in table.head(sheet_n).itertuples()
    ]
    picture_sheet(out_dir / "sheet.png", images[:sheet_n], titles)
    geo = {}
    if "image" in table:  # an image set: a CSV to fill in (`type: csv` dataset source)
        labels = table.assign(path=table["image"], label="")[
            ["path", "label", "suggested", "score"]
        ]
        with atomic_file(out_dir / "labels.csv") as tmp:
            labels.to_csv(tmp, index=False)
    on_slides = table[table["slide_id"].astype(str) != ""]
    for sid, rows in on_slides.groupby("slide_id", sort=False):
        s = slides[slides["slide_id"] == sid].iloc[0]
        side0 = level0_px(float(s["mpp_x"]), mpp, patch_px)
        info = {
            "slide": str(s["name"]),
            "slide_id": str(sid),
            "width": int(s["width_px"]),
            "height": int(s["height_px"]),
        }
        doc = queue_collection(
            rows,
            kind=kind,
            slide=info,
            side_px0=side0,
            classes=classes,
            round_no=round_no,
            dataset=dataset,
        )
        geo[str(s["name"])] = str(write_collection(out_dir / f"{s['name']}.geojson", doc))
    summary = {
        "kind": kind,
        "round": round_no,
        "dataset": dataset,
        "queued": len(table),
        "table": str(out_dir / "queue.csv"),
        "sheet": str(out_dir / "sheet.png"),
        "geojson": geo,
        **({"labels": str(out_dir / "labels.csv")} if "image" in table else {}),
    }
    write_json(out_dir / "summary.json", summary)
    return summary
