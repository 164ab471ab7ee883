"""The review of an archived model: which slide it is shown on, and the card entries it leaves.

The heatmap itself is drawn by whoever can run the model (the archive stage passes
`autoscope.infer.review.draw_review`); this module never runs inference, so `archive` does not
depend on `infer`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from autoscope.archive.card import ModelCard
from autoscope.portable import portable_path

Pick = Callable[[ModelCard], str | None]  # card -> slide path to review (None: no review)
Draw = Callable[[Path, ModelCard, str], dict[str, str]]  # folder, card, slide -> review entries


def pick_review_slide(
    ref: str | None, *, dataset_dir: Path | None, resolve: Callable[[str], str]
) -> str | None:
    """Path of the slide to review, or None.

    Args:
        ref: `archive.review_slide`: `auto` (the validation slide with most patches in the run's
            dataset), a slide file path, a registered slide's name or id, or None (no heatmap).
        dataset_dir: the run's dataset folder (for `auto`; None when unknown).
        resolve: registered slide name or id -> its path (raises UserError when unknown).
    """
    if ref in (None, "", "none"):
        return None
    ref = str(ref)
    if ref == "auto":
        from autoscope.datasets.store import read_manifest

        if dataset_dir is None or not (Path(dataset_dir) / "manifest.parquet").is_file():
            return None
        manifest = read_manifest(Path(dataset_dir), ["slide_id", "split"])
        val = manifest[manifest["split"] == "val"]
        if val.empty:
            return None
        ref = str(val["slide_id"].value_counts().index[0])
    elif Path(ref).is_file():
        return str(Path(ref).resolve())
    return resolve(ref)


def add_heatmap(
    folder: Path,
    card: ModelCard,
    *,
    pick: Pick,
    draw: Draw,
    echo: Callable[[str], None] = print,
    root: Path | str | None = None,
) -> ModelCard:
    """The card with the heatmap of its review slide; a failure is reported on it, not fatal.

    The card records the slide relative to `root` (the workspace; its file name when it lies
    elsewhere or no root is given), never a host's absolute path.
    """
    slide = None
    try:
        slide = pick(card)
        if slide is None:
            return card.with_review({}, None)
        return card.with_review(draw(folder, card, slide), {"path": portable_path(slide, root)})
    except Exception as e:  # noqa: BLE001 - the review picture is optional; the card says why
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        echo(f"archive: no review heatmap for {slide or 'archive.review_slide'}: {msg}")
        ref = None if slide is None else portable_path(slide, root)
        if slide is not None:
            msg = msg.replace(str(slide), str(ref))
        if root is not None:
            msg = msg.replace(f"{Path(root)}{os.sep}", "")
        return card.with_review({}, {"path": ref, "error": msg})
