"""Compare two datasets: patches added and removed, relabelled, class counts changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoscope.datasets.store import read_manifest

LINEAGE = "lineage.json"  # written by `autoscope loop correct` in a corrected version


def corrections(b_dir: Path) -> dict[str, Any] | None:
    """Who changed what in dataset b, from its lineage (None: b is not a corrected version)."""
    import json

    path = Path(b_dir) / LINEAGE
    if not path.is_file():
        return None
    lin = json.loads(path.read_text())
    keep = ("parent", "round", "files", "queues", "by_kind", "by_author")
    return {k: lin.get(k) for k in keep}


COLS = ["patch_id", "slide_id", "slide", "x", "y", "mpp", "patch_px", "label", "split"]


def diff_datasets(a_dir: Path, b_dir: Path) -> dict[str, Any]:
    """What changed from dataset a to dataset b.

    Returns:
        {"added", "removed", "kept", "relabelled", "moved_split"} patch counts and
        "class_counts": {class: {"a", "b", "change"}}.
    """
    a, b = read_manifest(a_dir, COLS), read_manifest(b_dir, COLS)
    ia, ib = set(a["patch_id"]), set(b["patch_id"])
    place = ["slide_id", "slide", "x", "y", "mpp", "patch_px"]
    both = a.merge(b, on=place, suffixes=("_a", "_b"))
    kept = a[a["patch_id"].isin(ib)].merge(b[["patch_id", "split"]], on="patch_id")
    ca, cb = a["label"].value_counts(), b["label"].value_counts()
    classes = sorted(set(ca.index) | set(cb.index))
    return {
        "a": str(a_dir),
        "b": str(b_dir),
        "added": len(ib - ia),
        "removed": len(ia - ib),
        "kept": len(ia & ib),
        "relabelled": int((both["label_a"] != both["label_b"]).sum()),
        "moved_split": int((kept["split_x"] != kept["split_y"]).sum()),
        "corrections": corrections(b_dir),
        "class_counts": {
            c: {
                "a": int(ca.get(c, 0)),
                "b": int(cb.get(c, 0)),
                "change": int(cb.get(c, 0)) - int(ca.get(c, 0)),
            }
            for c in classes
        },
    }


def format_diff(d: dict[str, Any]) -> str:
    """Human-readable diff."""
    lines = [
        f"a: {d['a']}",
        f"b: {d['b']}",
        f"patches: +{d['added']} added, -{d['removed']} removed, {d['kept']} kept, "
        f"{d['relabelled']} relabelled, {d['moved_split']} moved to another split",
        f"{'class':<20}{'a':>8}{'b':>8}{'change':>8}",
    ]
    for c, v in d["class_counts"].items():
        lines.append(f"{c:<20}{v['a']:>8}{v['b']:>8}{v['change']:>+8}")
    corr = d.get("corrections")
    if corr:
        kinds = ", ".join(f"{n} {k}" for k, n in (corr["by_kind"] or {}).items())
        who = ", ".join(f"{a} ({n})" for a, n in (corr["by_author"] or {}).items())
        lines.append(f"corrections (round {corr['round']} of {corr['parent']}): {kinds}; by {who}")
    return "\n".join(lines)
