"""The inference spec: what the model card says plus how hard to run (`conf/infer/`).

`InferSpec.from_card(card, settings)` is the one place the engine's inputs come together: the
resolution, tile size, classes and tissue detector come from the card (never repeated in config),
the batching, devices and budgets from the infer settings of `autoscope infer`, of the bento's
slide job (`package.infer`) or of the archive review.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscope.archive.card import ModelCard
from autoscope.errors import UserError
from autoscope.project import ClassSpec

PREFETCH_SHARE = 0.5  # share of `memory` the read-ahead queue may hold
DECODE_MODES = ("auto", "cpu", "gpu")  # where JPEG tiles are decoded (see `engine.predict_slide`)
ENGINE_SETTINGS = (  # the keys of conf/infer/ an InferSpec takes (the rest pick model/slides)
    "stride_px", "batch_size", "workers", "device", "decode", "min_tissue",
    "memory", "progress", "instances", "resume", "segment", "detect",
)  # fmt: skip
JOB_SETTINGS = ("model", "slides", "out_root", "shard", "shards")  # read by the infer stage
_SIZE = re.compile(r"^\s*([\d.]+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_bytes(text: str | int | float | None) -> int | None:
    """`"4GB"`, `"512MiB"`, `2e9` -> bytes; None/empty -> None.

    Raises:
        UserError: not a size.
    """
    if text in (None, "", "null"):
        return None
    if isinstance(text, int | float):
        return int(text)
    m = _SIZE.match(str(text))
    if not m:
        raise UserError(f"infer.memory: '{text}' is not a size like 4GB or 512MB")
    return int(float(m.group(1)) * 1024 ** "BKMGT".index((m.group(2) or "B").upper()))


@dataclass(frozen=True)
class InferSpec:
    """Everything one engine run needs besides the model weights and the slide."""

    # from the model card
    mpp: float  # model input resolution (um/px)
    patch_px: int  # model input side
    classes: tuple[ClassSpec, ...]  # index = model output
    task: str = "tissue_classification"
    tissue: dict[str, Any] = field(default_factory=dict)  # TissueDetector(**tissue)
    arch: dict[str, Any] = field(default_factory=dict)  # the card's architecture (a family's keys)
    model_info: dict[str, Any] = field(default_factory=dict)  # recorded in each summary
    # from the infer settings
    stride_px: int | None = None  # grid step at the model resolution (None: patch_px)
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    decode: str = "auto"
    min_tissue: float = 0.1
    memory: int | None = None  # bytes of prefetched tiles per instance (None: no bound)
    progress: bool = True
    instances: int = 1
    resume: bool = True
    segment: dict[str, Any] = field(default_factory=dict)  # infer.segment: segmentation engine
    detect: dict[str, Any] = field(default_factory=dict)  # infer.detect: the detection engine's

    @classmethod
    def from_card(
        cls, card: ModelCard, settings: Mapping[str, Any] | None = None, **info: Any
    ) -> InferSpec:
        """The spec of `card` run with `settings` (keys of `conf/infer/`; unknown keys refused).

        Args:
            card: the archived model's card.
            settings: infer settings; keys that are not engine settings (model, slides, out_root,
                shard, shards) are ignored, other unknown keys refused.
            info: extra `model_info` entries (e.g. the model folder).

        Raises:
            UserError: an unknown setting or a bad value (one line).
        """
        given = dict(settings or {})
        check_settings(given)
        values = {k: v for k, v in given.items() if k in ENGINE_SETTINGS}
        spec = cls(
            mpp=card.input.mpp,
            patch_px=card.input.patch_px,
            classes=card.classes,
            task=card.task,
            tissue=dict(card.tissue),
            arch=dict(card.arch),
            model_info={**card.model_info(), **info},
            **_typed(values),
        )
        spec.check()
        return spec

    def check(self) -> None:
        """Refuse values the engine cannot run with.

        Raises:
            UserError: one line naming the setting.
        """
        if self.decode not in DECODE_MODES:
            raise UserError(
                f"infer.decode: {self.decode!r} is not one of {', '.join(DECODE_MODES)}"
            )
        for name in ("batch_size", "workers", "instances"):
            if getattr(self, name) < 1:
                raise UserError(f"infer.{name}: must be at least 1, got {getattr(self, name)}")
        if self.stride_px is not None and self.stride_px < 1:
            raise UserError(f"infer.stride_px: must be positive, got {self.stride_px}")
        self.queue_depth()

    @property
    def step_px(self) -> int:
        """The grid step at the model resolution."""
        return self.stride_px or self.patch_px

    @property
    def class_dicts(self) -> list[dict[str, str]]:
        """`[{name, color}]` for the writers."""
        return [{"name": c.name, "color": c.color} for c in self.classes]

    def queue_depth(self) -> int:
        """Batches read ahead: 2 per worker, fewer when `memory` cannot hold them.

        Raises:
            UserError: `memory` holds fewer than 2 batches.
        """
        want = max(2, 2 * self.workers)
        if self.memory is None:
            return want
        fits = int(self.memory * PREFETCH_SHARE // (self.batch_size * self.patch_px**2 * 3))
        if fits < 2:
            raise UserError(
                f"infer.memory={self.memory / 2**20:.0f}MB holds fewer than 2 batches of "
                f"{self.batch_size} {self.patch_px}px tiles: raise infer.memory or lower "
                "infer.batch_size"
            )
        return min(want, fits)

    def detector(self) -> Any:
        """The project's tissue detector with the card's parameters."""
        from autoscope.slides.tissue import TissueDetector

        return TissueDetector.from_params(self.tissue)


def check_settings(settings: Mapping[str, Any], where: str = "infer") -> None:
    """Refuse a key that is no infer setting (a typo would otherwise be silently ignored).

    Raises:
        UserError: one line naming the key and the known ones.
    """
    unknown = sorted(set(settings) - set(ENGINE_SETTINGS) - set(JOB_SETTINGS))
    if unknown:
        known = ", ".join(ENGINE_SETTINGS)
        raise UserError(f"{where}.{unknown[0]}: not an inference setting (known: {known})")


def block_settings(
    where: str, given: Mapping[str, Any] | None, defaults: Mapping[str, Any], kind: str
) -> dict[str, Any]:
    """A family's settings block (`infer.segment`, `infer.detect`) over its defaults; a null
    value keeps the default.

    Raises:
        UserError: an unknown key (one line naming `<where>.<key>` and the known ones).
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UserError(f"{where}.{unknown[0]}: not a {kind} setting ({', '.join(defaults)})")
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """Settings as the spec's types (config gives strings, None, ints)."""
    out = dict(values)
    for k in ("batch_size", "workers", "instances"):
        if k in out:
            out[k] = int(out[k])
    if out.get("stride_px") is not None:
        out["stride_px"] = int(out["stride_px"])
    for k in ("device", "decode"):
        if k in out:
            out[k] = str(out[k])
    if "min_tissue" in out:
        out["min_tissue"] = float(out["min_tissue"])
    for k in ("progress", "resume"):
        if k in out:
            out[k] = bool(out[k])
    for k in ("segment", "detect"):  # a family's own block (its engine checks its keys)
        if k in out:
            out[k] = dict(out[k] or {})
    if "memory" in out:
        out["memory"] = parse_bytes(out["memory"])
    if out.get("instances", 1) > 1:
        out["progress"] = False  # one bar per slide only makes sense in one process
    return out
