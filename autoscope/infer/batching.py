"""Model calls over prefetched uint8 batches on the CPU: device choice, model preparation."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np


def uint8_patches(value: Any, patch_px: int) -> np.ndarray:
    """A batch of patches as uint8 `[N, patch_px, patch_px, 3]` (0-255 integers are cast).

    Raises:
        ValueError: not an array of that shape, or values outside 0-255.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"patches are not an array: {e}") from None
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "iu" or arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"patches must be uint8 pixels 0-255, got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    if arr.ndim != 4 or arr.shape[1:] != (patch_px, patch_px, 3):
        raise ValueError(f"patches must have shape [N, {patch_px}, {patch_px}, 3], got {arr.shape}")
    return arr


def pick_device(device: str = "auto") -> Any:
    """`auto` -> cuda if available, else mps, else cpu; any other value is used as given."""
    import torch

    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def run_model(
    model: Any,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    device: Any,
    bar: Any = None,
    **_: Any,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Run `model` over uint8 NHWC batches on the CPU (or MPS); CUDA has `cuda_feed.run_model_cuda`.

    Returns coords, float32 probabilities and timings (`model_busy_s`: time in the model).
    """
    import torch

    coords_all: list[np.ndarray] = []
    probs_all: list[Any] = []
    model_s, first_s = 0.0, None
    t0 = time.perf_counter()
    with torch.inference_mode():
        for patches, coords in batches:
            first_s = time.perf_counter() - t0 if first_s is None else first_s
            x = torch.from_numpy(np.ascontiguousarray(patches))
            t_m = time.perf_counter()
            probs = torch.softmax(model(x if device.type == "cpu" else x.to(device)).float(), dim=1)
            model_s += time.perf_counter() - t_m
            probs_all.append(probs)
            coords_all.append(np.asarray(coords, np.int64))
            if bar is not None:
                bar.update(len(coords))
    wall = time.perf_counter() - t0
    n_cls = probs_all[0].shape[1] if probs_all else 0
    probs_np = torch.cat(probs_all).cpu().numpy() if probs_all else np.zeros((0, n_cls), np.float32)
    coords_np = np.concatenate(coords_all) if coords_all else np.zeros((0, 2), np.int64)
    stats = {"predict_s": wall, "model_busy_s": model_s, "first_batch_s": first_s or 0.0}
    return coords_np, probs_np, stats


def prepare_model(model: Any, device: Any, patch_px: int | None = None) -> Any:
    """Move the model to `device` in eval mode, ready for inference.

    On CUDA: channels-last convolutions and cuDNN autotuning. On CPU, given `patch_px`: a frozen
    TorchScript trace (batch norm folded into the convolutions, oneDNN-optimised), about 1.2x
    faster for small CNNs and equal to the eager model within float rounding; any model that
    does not trace stays eager.
    """
    import torch

    model = model.eval().to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        return model.to(memory_format=torch.channels_last)
    if patch_px is None:
        return model
    cache = model.__dict__.setdefault("_autoscope_frozen", {})  # one trace per model and size
    if patch_px not in cache:
        cache[patch_px] = _frozen(model, patch_px)
    return cache[patch_px]


def _frozen(model: Any, patch_px: int) -> Any:
    """A frozen, inference-optimised TorchScript trace of `model` (the model itself if it fails)."""
    import warnings

    import torch

    example = torch.zeros((2, patch_px, patch_px, 3), dtype=torch.uint8)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except Exception:  # noqa: BLE001 - tracing is an optimisation, never a requirement
        return model
