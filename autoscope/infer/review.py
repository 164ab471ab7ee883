"""The review heatmap of an archived model: the inference engine over one validation slide.

`archive` puts the pictures on the model card; it runs this through the engine, with the card's
own input spec and tissue detector, so the review shows what `autoscope infer` will do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from autoscope.atomic import scratch_dir
from autoscope.infer.spec import InferSpec

PICTURES = (("heatmap.png", "heatmap"), ("overview.png", "heatmap_overview"))


def draw_review(version_dir: Path, slide_path: str, spec: InferSpec) -> dict[str, str]:
    """Run the archived weights in `version_dir` over `slide_path`; copy its pictures to review/.

    Args:
        version_dir: the archived version folder (card, `spec.json`, `model.pt`).
        slide_path: the slide to review.
        spec: built from the version's card (`InferSpec.from_card`).

    Returns:
        Card review entries: `heatmap` and `heatmap_overview` (paths relative to the card).
    """
    from autoscope.infer.models import load_model
    from autoscope.tasks import entry

    infer_slide = entry(spec.task, "engine")  # the task family's engine

    model, _ = load_model(version_dir)
    review = Path(version_dir) / "review"
    review.mkdir(exist_ok=True)
    out: dict[str, str] = {}
    with scratch_dir(version_dir, "review") as tmp:
        infer_slide(model, slide_path, tmp, spec, name="slide")
        for src, key in PICTURES:
            if (Path(tmp) / "slide" / src).is_file():
                shutil.copy2(Path(tmp) / "slide" / src, review / f"{key}.png")
                out[key] = f"review/{key}.png"
    return out
