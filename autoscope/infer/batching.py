"""Model calls over prefetched uint8 batches: device choice, CUDA streaming, bf16 autocast."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

MAX_IN_FLIGHT = 4  # CUDA batches queued ahead of the host before it waits (bounds pinned memory)


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
    amp: bool = True,
    profile: bool = False,
    bar: Any = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Run `model` over uint8 NHWC batches; return coords, float32 probabilities and timings.

    On CUDA the uint8 tiles are pinned, copied with `non_blocking` and normalised on the device
    (inside the model), under bf16 autocast; at most `MAX_IN_FLIGHT` batches run ahead of the host.
    With `profile`, CUDA events around each model call give `model_busy_s` (GPU time in the model).
    """
    import torch

    cuda = device.type == "cuda"
    coords_all: list[np.ndarray] = []
    probs_all: list[Any] = []
    in_flight: deque = deque()
    events: list[tuple[Any, Any]] = []
    model_s = 0.0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for patches, coords in batches:
            x = torch.from_numpy(np.ascontiguousarray(patches))
            if cuda:
                x = x.pin_memory().to(device, non_blocking=True)
            elif device.type != "cpu":
                x = x.to(device)
            t_m = time.perf_counter()
            start = end = None
            if profile and cuda:
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda and amp):
                logits = model(x)
            probs = torch.softmax(logits.float(), dim=1)
            if cuda:
                done = torch.cuda.Event()
                if end is not None:
                    end.record()
                    events.append((start, end))
                done.record()
                in_flight.append(done)
                if len(in_flight) > MAX_IN_FLIGHT:
                    in_flight.popleft().synchronize()
            else:
                model_s += time.perf_counter() - t_m
            probs_all.append(probs)
            coords_all.append(np.asarray(coords, np.int64))
            if bar is not None:
                bar.update(len(coords))
    if cuda:
        torch.cuda.synchronize(device)
        model_s = sum(s.elapsed_time(e) for s, e in events) / 1000.0
    wall = time.perf_counter() - t0
    n_cls = probs_all[0].shape[1] if probs_all else 0
    probs_np = (
        torch.cat(probs_all).float().cpu().numpy()
        if probs_all
        else np.zeros((0, n_cls), np.float32)
    )
    coords_np = np.concatenate(coords_all) if coords_all else np.zeros((0, 2), np.int64)
    return coords_np, probs_np, {"predict_s": wall, "model_busy_s": model_s}


def prepare_model(model: Any, device: Any) -> Any:
    """Move the model to `device` in eval mode (channels-last convolutions on CUDA)."""
    import torch

    model = model.eval().to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    return model
