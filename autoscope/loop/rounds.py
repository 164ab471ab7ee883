"""One round of the loop: refine a dataset's labels, or select unlabelled tissue to annotate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.datasets.store import open_shards, read_manifest
from autoscope.loop.confident import find_label_issues
from autoscope.loop.features import colour_texture, model_outputs
from autoscope.loop.oof import out_of_fold
from autoscope.loop.selection import cold_start, select_uncertain_diverse


@dataclass(frozen=True)
class RefineSpec:
    """How `autoscope refine` scores labels (defaults in conf/loop/default.yaml)."""

    folds: int = 5
    c: float = 1.0
    queue_size: int = 200
    splits: tuple[str, ...] = ("train", "val")
    seed: int = 0


@dataclass(frozen=True)
class SelectSpec:
    """How `autoscope select` picks tissue to annotate (defaults in conf/loop/default.yaml)."""

    budget: int = 50
    per_slide_cap: int | None = 20
    uncertainty: str = "margin"
    pool_factor: float = 4.0
    tta: bool = False
    mc_dropout: int = 0
    candidates_per_slide: int = 2000
    min_tissue: float = 0.5
    seed: int = 0


def dataset_pixels(ds_dir: Path, m: pd.DataFrame) -> np.ndarray:
    """uint8 pixels of the manifest rows `m` (in m's order) from the dataset's shards."""
    shards = open_shards(ds_dir)
    px = int(m["patch_px"].iloc[0])
    out = np.empty((len(m), px, px, 3), np.uint8)
    pos = np.arange(len(m))
    for s, rows in m.assign(_pos=pos).groupby("shard", sort=False):
        out[rows["_pos"].to_numpy()] = shards[str(s)][rows["index"].to_numpy(np.int64)]
    return out


def _features(images: np.ndarray, model: Any | None, tta: bool) -> tuple[np.ndarray, Any]:
    if model is None:
        return colour_texture(images), None
    emb, probs = model_outputs(model, images, tta=tta)
    return emb, probs


def refine(
    ds_dir: Path, spec: RefineSpec, classes: list[str], model: Any | None = None
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Out-of-fold probabilities of a linear head, then confident learning, for a dataset.

    Features are the archived model's embeddings when `model` is given, else colour/texture
    statistics. Folds keep each split group (slide, patient, image cluster) whole.

    Returns:
        (queue table most suspect first, the queue's pixels, summary with the confident joint).
    """
    m = read_manifest(ds_dir)
    m = m[m["split"].isin(spec.splits)].reset_index(drop=True)
    images = dataset_pixels(ds_dir, m)
    print(f"refine: features of {len(m)} patches", flush=True)
    feats, _ = _features(images, model, False)
    labels = m["label_idx"].to_numpy(np.int64)
    print(f"refine: {spec.folds}-fold out-of-fold probabilities", flush=True)
    probs = out_of_fold(
        feats, labels, m["group"].to_numpy(), len(classes), spec.folds, spec.seed, spec.c
    )
    issues = find_label_issues(labels, probs)
    rows = issues.ranked()[: spec.queue_size]
    table = pd.DataFrame(
        {
            "patch_id": m["patch_id"].to_numpy()[rows],
            "slide_id": m["slide_id"].to_numpy()[rows],
            "slide": m["slide"].to_numpy()[rows],
            "x": m["x"].to_numpy()[rows],
            "y": m["y"].to_numpy()[rows],
            "given": [classes[i] for i in labels[rows]],
            "suggested": [classes[i] for i in issues.suggested[rows]],
            "score": issues.score[rows].round(4),
            "p_suggested": probs[rows, issues.suggested[rows]].round(4),
            "split": m["split"].to_numpy()[rows],
        }
    )
    summary = {
        "patches": len(m),
        "issues": int(issues.issue.sum()),
        "confident_joint": issues.joint.tolist(),
        "thresholds": issues.thresholds.round(4).tolist(),
        "oof_acc": round(float((probs.argmax(1) == labels).mean()), 4),
        "features": "model" if model is not None else "colour_texture",
    }
    return table, images[rows], summary


def slide_candidates(
    slides: pd.DataFrame,
    mpp: float,
    patch_px: int,
    spec: SelectSpec,
    taken: pd.DataFrame,
    detector: Any,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Tissue grid patches of registered slides that no dataset row covers yet, with pixels."""
    from autoscope.datasets.shards import read_slide_patches
    from autoscope.infer.source import tissue_grid
    from autoscope.slides.reader import open_reader

    rng = np.random.default_rng(spec.seed)
    frames, pixels = [], []
    for s in slides.itertuples():
        with open_reader(str(s.path), mpp_x=float(s.mpp_x)) as reader:
            coords, _, _ = tissue_grid(
                reader,
                mpp=mpp,
                patch_px=patch_px,
                stride_px=patch_px,
                tissue=detector,
                min_tissue=spec.min_tissue,
            )
        have = taken[taken["slide_id"] == s.slide_id]
        done = {(int(x), int(y)) for x, y in zip(have["x"], have["y"], strict=True)}
        coords = np.array([c for c in coords if (int(c[0]), int(c[1])) not in done], np.int64)
        if len(coords) > spec.candidates_per_slide:
            coords = coords[np.sort(rng.choice(len(coords), spec.candidates_per_slide, False))]
        if not len(coords):
            continue
        print(f"select: {s.name}: {len(coords)} unlabelled tissue patches", flush=True)
        for patches, xy in read_slide_patches(
            str(s.path), float(s.mpp_x), coords, mpp, patch_px, 1
        ):
            pixels.append(patches)
            frames.append(
                pd.DataFrame(
                    {"slide_id": s.slide_id, "slide": s.name, "x": xy[:, 0], "y": xy[:, 1]}
                )
            )
    if not frames:
        return pd.DataFrame(columns=["slide_id", "slide", "x", "y"]), np.zeros(
            (0, patch_px, patch_px, 3)
        )
    return pd.concat(frames, ignore_index=True), np.concatenate(pixels)


def image_candidates(
    paths: list[Path], patch_px: int, spec: SelectSpec, taken: set[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Unlabelled pre-cut images (an image set, no slide) as candidates, with pixels.

    `taken` holds the images a dataset has already (resolved paths); each image's folder is its
    group for the per-slide cap. A seeded sample keeps at most `candidates_per_slide` per folder.
    """
    from autoscope.datasets.imports import load_image

    rng = np.random.default_rng(spec.seed)
    todo = [p for p in sorted(paths) if str(p.resolve()) not in taken]
    by_dir: dict[str, list[Path]] = {}
    for p in todo:
        by_dir.setdefault(p.parent.name, []).append(p)
    keep = []
    for group in by_dir.values():
        if len(group) > spec.candidates_per_slide:
            idx = np.sort(rng.choice(len(group), spec.candidates_per_slide, replace=False))
            group = [group[i] for i in idx]
        keep += group
    print(f"select: {len(keep)} unlabelled images of {len(by_dir)} folder(s)", flush=True)
    pixels = np.stack([load_image(p, patch_px) for p in keep]) if keep else np.zeros((0,))
    table = pd.DataFrame(
        {
            "slide_id": "",
            "slide": [p.parent.name for p in keep],
            "x": 0,
            "y": 0,
            "image": [str(p) for p in keep],
        }
    )
    return table, pixels


def select(
    cands: pd.DataFrame,
    images: np.ndarray,
    spec: SelectSpec,
    classes: list[str],
    model: Any | None = None,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """The `budget` candidates to annotate: uncertainty + diversity, or the cold start."""
    import hashlib

    groups = cands["slide"].to_numpy()
    feats, probs = _features(images, model, spec.tta)
    samples = None
    if probs is not None and spec.mc_dropout:
        from autoscope.loop.features import mc_dropout_probs

        print(f"select: {spec.mc_dropout} MC-dropout passes", flush=True)
        samples = mc_dropout_probs(model, images, spec.mc_dropout)
        probs = samples.mean(axis=0)
    if probs is None:
        rows = cold_start(feats, spec.budget, spec.seed, groups, spec.per_slide_cap)
        score = np.zeros(len(rows))
        suggested = [""] * len(rows)
        mode = "cold_start"
    else:
        from autoscope.loop.selection import uncertainty

        rows = select_uncertain_diverse(
            probs,
            feats,
            spec.budget,
            pool_factor=spec.pool_factor,
            kind=spec.uncertainty,
            groups=groups,
            cap=spec.per_slide_cap,
            samples=samples,
        )
        score = uncertainty(probs, spec.uncertainty, samples)[rows]
        suggested = [classes[i] for i in probs[rows].argmax(1)]
        mc = f"+mc_dropout{spec.mc_dropout}" if samples is not None else ""
        mode = f"{spec.uncertainty}{mc}+k_centre"
    c = cands.iloc[rows].reset_index(drop=True)
    where = c["image"] if "image" in c else c["slide_id"]
    ids = [
        hashlib.sha1(f"select:{a}:{x}:{y}".encode()).hexdigest()[:16]
        for a, x, y in zip(where, c["x"], c["y"], strict=True)
    ]
    table = c.assign(patch_id=ids, given="", suggested=suggested, score=np.round(score, 4))
    return table, images[rows], {"mode": mode, "candidates": len(cands), "selected": len(table)}
