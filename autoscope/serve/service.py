"""The BentoML service of a package: batched patch prediction and whole-slide jobs.

`predict` takes uint8 patches `[N, patch_px, patch_px, 3]` and returns class probabilities
`[N, C]` (a classification package; `mask` and `cells` are a segmentation and a detection
package's patch APIs); concurrent requests are merged into batches (`max_batch_size`,
`max_latency_ms`) and queue up to `queue_limit` per worker (then 503 "queue full",
`guard.PredictQueue`).
`predict_npy` is the same batched API for a compact binary body: a multipart upload whose
`patches` file is an `.npy` array (`np.save`; read with `allow_pickle=False`), checked by the
same `uint8_patches` (JSON lists of ints cost ~35 ms of CPU per 16 patches to parse). The
`slide` task runs the inference engine of `autoscope infer` over one slide inside the allowed
roots and returns its summary. Bad requests get a 4xx, never a 500, and log one line
(`serve.logs`). The allowed roots and the jobs folder come from the serve-time environment
(`serve.settings`); the server binds the settings' `host` (127.0.0.1) unless
`--host`/`BENTOML_HOST` says otherwise.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument, UnprocessableEntity
from bentoml.models import BentoModel
from pydantic import AfterValidator, BeforeValidator, Field

from autoscope.archive.card import ModelCard, read_card
from autoscope.infer.spec import InferSpec
from autoscope.serve import logs
from autoscope.serve.guard import PredictQueue, SlideSubmitGuard
from autoscope.serve.settings import check_slide_path, load_settings

SETTINGS = load_settings(bentoml.use_arguments(), os.environ)
logs.install()  # a refused request logs one line, not a traceback


def _card(tag: str) -> ModelCard:
    stored = BentoModel(tag).stored
    if stored is None:
        raise BentoMLException(f"model {tag} is not in the BentoML model store")
    card = read_card(Path(stored.path))
    return card if card.bentoml_tag else replace(card, bentoml_tag=tag)


CARDS = [_card(tag) for tag in SETTINGS.models]
PATCH_PX = CARDS[0].input.patch_px
# the slide job's engine settings: the card's input spec and tissue detector plus `package.infer`
SPECS = {
    c.bentoml_tag: InferSpec.from_card(c, {**SETTINGS.infer, "progress": False}) for c in CARDS
}


def _patches(value: Any) -> np.ndarray:
    """Check one request's patches: uint8 `[N, patch_px, patch_px, 3]`, 1 <= N <= max batch."""
    from autoscope.infer.batching import uint8_patches

    arr = uint8_patches(value, PATCH_PX)
    if not 1 <= arr.shape[0] <= SETTINGS.max_batch_size:
        raise ValueError(f"send 1 to {SETTINGS.max_batch_size} patches per request")
    return arr


def _npy_patches(value: Any) -> np.ndarray:
    """The patches of an uploaded `.npy` file (BentoML hands it over as a temp file path).

    Never unpickles: `allow_pickle=False` refuses object arrays. The array's size is bounded by
    the upload's, and it is checked as the JSON API's patches are (`_patches`).
    """
    import io

    path = Path(value)
    try:
        data = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable upload is the client's error
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"patches file is not a .npy array: {msg}") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError("patches file is not a .npy array (an .npz archive?)")
    return _patches(arr)


def _slide_path(value: str) -> str:
    return check_slide_path(value, SETTINGS.allowed_roots)


def torch_threads(setting: int, workers: int) -> int:
    """Torch's intra-op threads of one worker: `setting`, or (0) this host's cores / workers."""
    if setting > 0:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


ROUTES = {"classification": "/predict", "segmentation": "/mask", "detection": "/cells"}
Patches = Annotated[np.ndarray, BeforeValidator(_patches)]
# a file field: BentoML reads it from a multipart upload (`FileSchema` -> a temp file), then ours
NpyPatches = Annotated[Path, AfterValidator(_npy_patches)]
SlidePath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_slide_path)]


class PatchService:
    """Archived patch classifiers behind a batched API and a slide job API."""

    def __init__(self) -> None:
        import torch

        from autoscope.infer.engine import pick_device
        from autoscope.infer.models import load_model

        self.device = pick_device("auto")
        torch.set_num_threads(torch_threads(SETTINGS.torch_threads, SETTINGS.workers))
        try:  # the slide job's writers (pandas, shapely, matplotlib) load now, not in a request
            importlib.import_module("autoscope.infer.writers")
        except ImportError:
            pass
        self.models: dict[str, Any] = {}
        for i, card in enumerate(CARDS):
            path = Path(getattr(self, f"model_{i}").path)
            model = load_model(path)[0].eval().to(self.device)
            px = card.input.patch_px
            with torch.inference_mode():  # warm up, so the first request meets its latency budget
                model(torch.zeros((1, px, px, 3), dtype=torch.uint8, device=self.device))
            self.models[card.bentoml_tag] = model

    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
    )
    def predict(self, patches: Patches) -> np.ndarray:
        """Class probabilities `[N, C]` (float32; order = the card's classes) for uint8 patches."""
        return self._probabilities(patches)

    @bentoml.api
    def mask(self, patches: Patches, model: str = "") -> list[dict[str, Any]]:
        """A segmentation model's class index per pixel of each patch, and its class areas."""
        return self._dense("segmentation", patches, model)

    @bentoml.api
    def cells(self, patches: Patches, model: str = "") -> list[dict[str, Any]]:
        """A cell detection model's cells in each patch: x, y (patch px), class, probability."""
        return self._dense("detection", patches, model)

    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
    )
    def predict_npy(self, patches: NpyPatches) -> np.ndarray:
        """`predict` for a multipart upload: `patches`, a uint8 `.npy` file `[N, px, px, 3]`."""
        return self._probabilities(patches)

    @bentoml.api
    def card(self, model: str = "") -> dict[str, Any]:
        """The model card of `model` (a packaged BentoML tag; default: the first model)."""
        return self._pick(model)[1].to_json()

    @bentoml.task
    def slide(self, path: SlidePath, model: str = "") -> dict[str, Any]:
        """Run the inference engine over one slide inside the allowed roots; return its summary.

        The slide is tiled as `autoscope infer` tiles it: the card's resolution, tile size and
        tissue detector, the package's engine settings.
        """
        from autoscope.infer.engine import SlideError
        from autoscope.tasks import entry

        net, card = self._pick(model)
        out_dir = Path(SETTINGS.jobs_dir) / str(card.bentoml_tag).replace(":", "-")
        infer_slide = entry(card.task, "engine")  # the task family's engine
        try:
            return infer_slide(net, path, out_dir, SPECS[card.bentoml_tag])
        except SlideError as e:
            raise UnprocessableEntity(str(e)) from None

    def _dense(self, want: str, patches: np.ndarray, tag: str) -> list[dict[str, Any]]:
        """Run the patch API of the `want` family (a model of another task is a 400)."""
        import torch

        from autoscope.tasks import entry, family

        net, card = self._pick(tag)
        have = family(card.task, "card task")
        if have != want:
            raise InvalidArgument(f"model {card.name} is a {card.task} model: use {ROUTES[have]}")
        with torch.inference_mode():
            return entry(card.task, "patches")(net, patches, SPECS[card.bentoml_tag])

    def _probabilities(self, patches: np.ndarray) -> np.ndarray:
        import torch

        from autoscope.tasks import family

        card = CARDS[0]
        have = family(card.task, "card task")
        if have != "classification":
            raise InvalidArgument(f"model {card.name} is a {card.task} model: use {ROUTES[have]}")
        model = self.models[card.bentoml_tag]
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(patches)).to(self.device)
            return torch.softmax(model(x).float(), dim=1).cpu().numpy()

    def _pick(self, tag: str) -> tuple[Any, ModelCard]:
        for card in CARDS:
            if tag in ("", card.bentoml_tag, card.name):
                return self.models[card.bentoml_tag], card
        raise InvalidArgument(f"unknown model '{tag}' (packaged: {', '.join(SETTINGS.models)})")


for _i, _tag in enumerate(SETTINGS.models):
    setattr(PatchService, f"model_{_i}", BentoModel(_tag))

_resources = {k: v for k, v in SETTINGS.resources.items() if v not in (None, 0, "0", "")}
PatchService = bentoml.service(  # type: ignore[misc]
    name=SETTINGS.name,
    workers=SETTINGS.workers,
    threads=SETTINGS.threads,
    resources=_resources,
    traffic={"timeout": SETTINGS.timeout_s, "concurrency": SETTINGS.concurrency},
    http={"host": SETTINGS.host},
)(PatchService)
for _route in ("/predict", "/predict_npy"):  # each batched API's own bounded queue
    PatchService.add_asgi_middleware(
        PredictQueue,
        route=_route,
        limit=SETTINGS.queue_limit,
        max_latency_ms=SETTINGS.max_latency_ms,
    )
PatchService.add_asgi_middleware(
    SlideSubmitGuard,
    route="/slide",
    roots=SETTINGS.allowed_roots,
    models=[*SETTINGS.models, *(c.name for c in CARDS)],
)
