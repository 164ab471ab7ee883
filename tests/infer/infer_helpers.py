"""Small models and archived-model folders for the inference tests (no training needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoscope.config import compose

CLASSES = [{"name": "tumor", "color": "#d62728"}, {"name": "stroma", "color": "#1f77b4"}]
TINY_ARCH = compose("demo", ["model=tiny_cnn"]).model  # conf/model/tiny_cnn.yaml


def tiny_classifier(seed: int = 0) -> Any:
    """A real `PatchClassifier` (uint8 NHWC in, logits out) with a few hundred weights."""
    import torch

    from autoscope.models.classifier import PatchClassifier

    torch.manual_seed(seed)
    return PatchClassifier.build(TINY_ARCH, len(CLASSES)).eval()


def archive_model(
    models_dir: Path,
    name: str = "tissue_classification",
    version: int = 1,
    *,
    mpp: float = 2.0,
    patch_px: int = 32,
) -> Path:
    """Write `models_dir/<name>/v<N>/{metadata.json, spec.json, model.pt}` like `archive` does."""
    import torch

    from autoscope.models.classifier import make_spec

    out = models_dir / name / f"v{version}"
    out.mkdir(parents=True)
    model = tiny_classifier(seed=version)
    spec = make_spec(TINY_ARCH, CLASSES, mpp=mpp, patch_px=patch_px)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "spec.json").write_text(json.dumps(spec))
    card = {"name": name, "version": version, **spec, "weights": "model.pt", "spec": "spec.json"}
    (out / "metadata.json").write_text(json.dumps(card))
    return out


def infer_spec(
    mpp: float = 2.0, patch_px: int = 32, tissue: dict | None = None, **settings: Any
) -> Any:
    """An `InferSpec` as `autoscope infer` builds it: a card of the tiny model plus settings."""
    from autoscope.archive.card import ModelCard
    from autoscope.infer.spec import InferSpec

    data = {"name": "tiny", "classes": CLASSES, "input": {"mpp": mpp, "patch_px": patch_px}}
    card = ModelCard.from_json({**data, "tissue": tissue or {}})
    return InferSpec.from_card(card, {"progress": False, **settings})
