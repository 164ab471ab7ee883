"""The model card (`metadata.json`): what a model is, what it expects, where it came from.

`ModelCard` is the one typed reading of a card: `archive` writes it, `package`, the BentoML
service and `infer` configure themselves from it. The JSON layout is the historical one (flat
keys, `input: {patch_px, mpp, mean, std}`, `date`) plus `tissue` (the detector parameters the
model was reviewed with) and `created`; unknown keys are kept in `extra` and written back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoscope.atomic import write_json
from autoscope.errors import UserError
from autoscope.portable import portable_path
from autoscope.project import ClassSpec

CARD = "metadata.json"
WEIGHTS = "model.pt"
SPEC = "spec.json"


class CardError(UserError):
    """A `metadata.json` that is missing, not JSON, or lacks what a model needs."""


@dataclass(frozen=True)
class InputSpec:
    """What the model eats: `patch_px` square uint8 RGB tiles at `mpp`, normalised by mean/std."""

    patch_px: int
    mpp: float
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelCard:
    """One archived model version (see `docs`/DESIGN.md "Model card")."""

    name: str  # registry name `<project>-<model_name>`
    version: int  # archive version N (folder `v<N>`, MLflow model version)
    task: str  # project.task: datasets, metrics, outputs and the bento API follow from it
    classes: tuple[ClassSpec, ...]  # index = model output
    input: InputSpec
    tissue: dict[str, Any] = field(default_factory=dict)  # TissueDetector(**tissue) parameters
    metrics: dict[str, float] = field(default_factory=dict)
    dataset_name: str | None = None
    dataset_version: str | None = None  # DVC hash of the dataset folder
    run_id: str | None = None  # MLflow run
    code_version: str | None = None  # git commit of the training code
    created: str | None = None  # ISO time of archiving (JSON also as `date`)
    project: str | None = None
    product: str | None = None
    organ: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)  # `spec.json` architecture
    weights: str = WEIGHTS  # state dict file beside the card (loaded with weights_only=True)
    spec: str = SPEC  # architecture file beside the card
    bentoml_tag: str | None = None
    mlflow_registry: dict[str, Any] = field(default_factory=dict)
    review: dict[str, str] = field(default_factory=dict)  # picture key -> path beside the card
    review_slide: dict[str, Any] | None = None  # {path: workspace-relative or file name, error}
    parameters: int | None = None  # number of weights
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def class_dicts(self) -> list[dict[str, str]]:
        """`[{name, color}]` as the writers and the service take them."""
        return [{"name": c.name, "color": c.color} for c in self.classes]

    def model_info(self) -> dict[str, Any]:
        """What slide summaries record about the model."""
        keys = ("name", "version", "run_id", "dataset_version", "code_version", "bentoml_tag")
        return {k: getattr(self, k) for k in keys}

    def with_review(self, review: dict[str, str], review_slide: dict | None) -> ModelCard:
        """A copy with more review pictures and the reviewed slide."""
        return replace(self, review={**self.review, **review}, review_slide=review_slide)

    def to_json(self) -> dict[str, Any]:
        """The `metadata.json` content (historical key order, then the new keys).

        A card travels between machines: paths in it are relative (review pictures beside the
        card, the review slide to the workspace); an absolute one left by a caller is cut to its
        file name here. `created`/`date` is metadata of the archiving, not part of any version.
        """
        d = asdict(self)
        d["review"] = {k: portable_path(v, None) for k, v in self.review.items()}
        if self.review_slide and self.review_slide.get("path"):
            d["review_slide"] = {
                **self.review_slide,
                "path": portable_path(str(self.review_slide["path"]), None),
            }
        extra = d.pop("extra")
        d["classes"] = self.class_dicts
        d["input"] = {**d["input"], "mean": list(self.input.mean), "std": list(self.input.std)}
        d["num_classes"] = len(self.classes)
        d["date"] = self.created
        return {**extra, **d}

    @classmethod
    def from_json(cls, data: Any, source: str = "model card") -> ModelCard:
        """Check and type a card's JSON content.

        Raises:
            CardError: one line naming `source` and the first problem found.
        """
        try:
            return cls._parse(dict(data))
        except (KeyError, TypeError, ValueError) as e:
            what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise CardError(f"{source}: not a usable model card ({what})") from None

    @classmethod
    def _parse(cls, d: dict[str, Any]) -> ModelCard:
        raw_classes = d["classes"]
        if not isinstance(raw_classes, list) or not raw_classes:
            raise ValueError("classes must be a non-empty list of {name, color}")
        classes = tuple(
            ClassSpec(str(c["name"]), str(c.get("color", "#808080"))) for c in raw_classes
        )
        inp = d["input"]
        if not inp.get("mpp"):
            raise ValueError("input.mpp is missing: the engine cannot choose a resolution")
        if int(inp["patch_px"]) <= 0:
            raise ValueError("input.patch_px must be positive")
        input_spec = InputSpec(
            patch_px=int(inp["patch_px"]),
            mpp=float(inp["mpp"]),
            mean=tuple(float(v) for v in inp.get("mean", InputSpec.mean)),
            std=tuple(float(v) for v in inp.get("std", InputSpec.std)),
        )
        known = {f for f in cls.__dataclass_fields__ if f != "extra"} | {"num_classes", "date"}
        return cls(
            name=str(d["name"]),
            version=int(d.get("version", 0)),
            task=str(d.get("task") or "tissue_classification"),
            classes=classes,
            input=input_spec,
            tissue={k: v for k, v in (d.get("tissue") or {}).items() if k != "_target_"},
            metrics={str(k): float(v) for k, v in (d.get("metrics") or {}).items()},
            dataset_name=d.get("dataset_name"),
            dataset_version=d.get("dataset_version"),
            run_id=d.get("run_id"),
            code_version=d.get("code_version"),
            created=d.get("created") or d.get("date"),
            project=d.get("project"),
            product=d.get("product"),
            organ=d.get("organ"),
            arch=dict(d.get("arch") or {}),
            weights=str(d.get("weights") or WEIGHTS),
            spec=str(d.get("spec") or SPEC),
            bentoml_tag=d.get("bentoml_tag"),
            mlflow_registry=dict(d.get("mlflow_registry") or {}),
            review=dict(d.get("review") or {}),
            review_slide=d.get("review_slide"),
            parameters=None if d.get("parameters") is None else int(d["parameters"]),
            extra={k: v for k, v in d.items() if k not in known},
        )


def now_iso() -> str:
    """The card's time stamp format (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_card(path: Path | str) -> ModelCard:
    """Read and check a `metadata.json` card (a file or a folder holding one).

    Raises:
        CardError: no card there, not JSON, or not a usable card.
    """
    p = Path(path)
    p = p / CARD if p.is_dir() else p
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CardError(f"{p}: not a usable model card ({type(e).__name__}: {e})") from None
    return ModelCard.from_json(data, str(p))


def write_card(folder: Path, card: ModelCard) -> Path:
    """Write `card` as `folder/metadata.json` atomically; returns the path."""
    return write_json(Path(folder) / CARD, card.to_json())


def archived_cards(models_dir: Path) -> list[tuple[Path, ModelCard]]:
    """(folder, card) of every archived model version under `outputs/<project>/models/`, sorted."""
    found = [(p.parent, read_card(p)) for p in sorted(Path(models_dir).glob(f"*/v*/{CARD}"))]
    return sorted(found, key=lambda fc: (fc[1].name, fc[1].version))
