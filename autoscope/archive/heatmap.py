"""The review heatmap of an archived model: the inference engine over one validation slide."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any


def pick_review_slide(cfg: Any, run: Any) -> str | None:
    """Path of the slide to review, or None.

    `archive.review_slide`: `auto` (the validation slide with most patches in the run's dataset),
    a slide file path, a registered slide's name or id, or null (no heatmap).

    Raises:
        UserError: a named slide is unknown; the dataset or registry is missing.
    """
    ref = cfg.archive.get("review_slide")
    if ref in (None, "", "none"):
        return None
    ref = str(ref)
    if ref == "auto":
        from autoscope.datasets.store import dataset_dir, read_manifest

        name = run.data.tags.get("dataset_name")
        ds = dataset_dir(cfg, name) if name else None
        if ds is None or not (ds / "manifest.parquet").is_file():
            return None
        manifest = read_manifest(ds, ["slide_id", "split"])
        val = manifest[manifest["split"] == "val"]
        if val.empty:
            return None
        ref = str(val["slide_id"].value_counts().index[0])
    elif Path(ref).is_file():
        return str(Path(ref).resolve())
    from autoscope.slides.registry import resolve_slide

    return str(resolve_slide(cfg, ref)["path"])


def draw_heatmap(version_dir: Path, slide_path: str) -> dict[str, str]:
    """Run the engine with the archived weights over `slide_path`; copy its pictures to review/.

    Returns:
        Card review entries: `heatmap` and `heatmap_overview` (paths relative to the card).
    """
    from autoscope.infer.engine import infer_slide
    from autoscope.models.classifier import PatchClassifier

    spec = json.loads((version_dir / "spec.json").read_text())
    model = PatchClassifier.from_files(version_dir / "spec.json", version_dir / "model.pt")
    review = version_dir / "review"
    review.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=version_dir) as tmp:
        infer_slide(
            model,
            slide_path,
            tmp,
            mpp=spec["input"]["mpp"],
            patch_px=spec["input"]["patch_px"],
            classes=spec["classes"],
            progress=False,
            name="slide",
        )
        out = {}
        for src, key in (("heatmap.png", "heatmap"), ("overview.png", "heatmap_overview")):
            if (Path(tmp) / "slide" / src).is_file():
                shutil.copy2(Path(tmp) / "slide" / src, review / f"{key}.png")
                out[key] = f"review/{key}.png"
    return out
