"""stats.json, a montage per class, a class-distribution plot and report.md for a dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.datasets.splits import SPLITS

MONTAGE_SIDE = 6  # patches per montage row and column
NO_DUPLICATES = {"dropped": 0, "label_conflicts": 0, "group_conflicts": 0}


def _counts(s: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in s.value_counts().sort_index().items()}


def compute_stats(
    m: pd.DataFrame,
    classes: list[str],
    colour: dict,
    extra: dict,
    duplicates: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Counts per class, split, split x class, slide and label level, plus colour mean/std.

    `duplicates` (`autoscope.datasets.imports.duplicate_images`): the exact duplicate images the
    build dropped, kept under `duplicates` (zero counts when none were given).
    """
    by_split_class = {
        s: {c: int(((m["split"] == s) & (m["label"] == c)).sum()) for c in classes} for s in SPLITS
    }
    return {
        **extra,
        "patches": len(m),
        "classes": classes,
        "by_class": {c: int((m["label"] == c).sum()) for c in classes},
        "by_split": {s: int((m["split"] == s).sum()) for s in SPLITS},
        "by_split_class": by_split_class,
        "groups_per_split": {s: int(m.loc[m["split"] == s, "group"].nunique()) for s in SPLITS},
        "by_slide": _counts(m["slide"]),
        "by_label_level": _counts(m["label_level"]),
        "colour": colour,
        "duplicates": dict(duplicates or NO_DUPLICATES),
    }


def duplicate_note(d: dict[str, Any]) -> list[str]:
    """What the build says about the exact duplicate images it dropped (no line when none)."""
    if not d.get("dropped"):
        return []
    lines = [
        f"{d['dropped']} exact duplicate images dropped (same bytes as another file; first kept), "
        f"e.g. {d['example']}"
    ]
    if d.get("label_conflicts"):
        lines.append(
            f"WARNING: {d['label_conflicts']} of these duplicates carry another label than the "
            f"kept copy (its label kept; check the labels), e.g. {d['label_example']}"
        )
    if d.get("group_conflicts"):
        lines.append(
            f"WARNING: {d['group_conflicts']} of these duplicates sit in another group than the "
            f"kept copy (its group kept; check the groups), e.g. {d['group_example']}"
        )
    return lines


def _montage(images: list[np.ndarray], patch_px: int) -> np.ndarray:
    side = MONTAGE_SIDE
    canvas = np.full((side * (patch_px + 2), side * (patch_px + 2), 3), 255, np.uint8)
    for i, img in enumerate(images[: side * side]):
        r, c = divmod(i, side)
        y, x = r * (patch_px + 2) + 1, c * (patch_px + 2) + 1
        canvas[y : y + patch_px, x : x + patch_px] = img
    return canvas


def write_pictures(
    ds_dir: Path, m: pd.DataFrame, classes: list[dict], patch_px: int, seed: int
) -> dict[str, str]:
    """Montage PNGs per class and the class-distribution plot under ds_dir/report/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from autoscope.datasets.store import open_shards

    out = ds_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    shards = open_shards(ds_dir)
    rng = np.random.default_rng(seed)
    pictures = {}
    for c in classes:
        rows = m[m["label"] == c["name"]]
        if rows.empty:
            continue
        pick = rows.iloc[
            np.sort(rng.choice(len(rows), min(len(rows), MONTAGE_SIDE**2), replace=False))
        ]
        imgs = [shards[s][i] for s, i in zip(pick["shard"], pick["index"], strict=True)]
        name = f"montage_{c['name']}.png"
        Image.fromarray(_montage(imgs, patch_px)).save(out / name)
        pictures[c["name"]] = name
    names = [c["name"] for c in classes]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    width = 0.8 / max(len(SPLITS), 1)
    for k, s in enumerate(SPLITS):
        vals = [int(((m["split"] == s) & (m["label"] == n)).sum()) for n in names]
        ax.bar(np.arange(len(names)) + k * width, vals, width, label=s)
    ax.set_xticks(np.arange(len(names)) + width * (len(SPLITS) - 1) / 2, names)
    ax.set_ylabel("patches")
    ax.set_title("class distribution per split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "class_distribution.png")
    plt.close(fig)
    pictures["_distribution"] = "class_distribution.png"
    return pictures


def write_report(ds_dir: Path, stats: dict[str, Any], pictures: dict[str, str]) -> Path:
    """report/report.md: counts tables and the pictures."""
    classes = stats["classes"]
    lines = [
        f"# Dataset `{stats['name']}`",
        "",
        f"{stats['patches']} patches of {stats['patch_px']} px at {stats['mpp']} um/px; "
        f"split by {stats['split_by']}.",
        "",
        "| split | groups | " + " | ".join(classes) + " | total |",
        "|---|---|" + "---|" * len(classes) + "---|",
    ]
    for s in SPLITS:
        row = stats["by_split_class"][s]
        cells = " | ".join(str(row[c]) for c in classes)
        lines.append(f"| {s} | {stats['groups_per_split'][s]} | {cells} | {stats['by_split'][s]} |")
    lines += [
        "",
        "Label levels: " + ", ".join(f"{k}={v}" for k, v in stats["by_label_level"].items()),
    ]
    col = stats["colour"]
    lines += [f"Colour mean {col['mean']}, std {col['std']} (RGB, 0..1).", ""]
    notes = duplicate_note(stats.get("duplicates") or {})
    if notes:
        lines += ["## Duplicates", "", *(f"- {n}" for n in notes), ""]
    lines += ["![class distribution](class_distribution.png)", ""]
    for c in classes:
        if c in pictures:
            lines += [f"## {c}", "", f"![{c}]({pictures[c]})", ""]
    for key, rel in pictures.items():  # a dense task's pictures (masks overlaid, cells drawn)
        if key not in classes and not key.startswith("_"):
            lines += [f"## {key}", "", f"![{key}]({rel})", ""]
    path = ds_dir / "report" / "report.md"
    path.write_text("\n".join(lines))
    return path


def write_stats(ds_dir: Path, stats: dict[str, Any]) -> None:
    """stats.json (sorted keys, stable across identical builds)."""
    (ds_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
