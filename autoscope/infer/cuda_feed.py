"""Feeding a model on a CUDA device without making it wait.

Host batches (uint8 numpy from the reader processes) are copied into a few pinned buffers that
are reused in turn (no pinned allocation per batch) and sent with ``non_blocking`` copies on a
side stream, so the copy of batch k+1 overlaps the model on batch k. Device batches (tiles
decoded on the GPU, :mod:`autoscope.infer.gpu_decode`) are made by a producer thread on its own
high-priority stream, ``depth`` batches ahead, so decoding overlaps the model too. The compute
stream waits on an event per batch (never the host), and at most ``MAX_IN_FLIGHT`` model calls
run ahead of the host; probabilities stay on the device until the end.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

MAX_IN_FLIGHT = 6  # model calls queued on the GPU ahead of the host (bounds device memory)
STAGING = 3  # pinned host buffers reused in turn for host -> device copies


class _Staging:
    """Pinned host buffers reused in turn; each waits for its last copy before it is refilled."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.bufs: list[Any] = []
        self.events: list[Any] = []
        self.i = 0

    def to_device(self, patches: np.ndarray) -> tuple[Any, Any]:
        """(device tensor, event after its copy) for a uint8 host batch."""
        import torch

        n = len(patches)
        if not self.bufs or self.bufs[0].shape[1:] != patches.shape[1:] or len(self.bufs[0]) < n:
            shape = tuple(patches.shape)
            self.bufs = [
                torch.empty(shape, dtype=torch.uint8, pin_memory=True) for _ in range(STAGING)
            ]
            self.events = [None] * STAGING
        k = self.i % STAGING
        self.i += 1
        if self.events[k] is not None:
            self.events[k].synchronize()  # the copy that last read this buffer is done
        buf = self.bufs[k][:n]
        # one single-threaded memcpy: torch's parallel copy would wake the main process's
        # intra-op threads, which then spin on the cores the reader processes need
        np.copyto(buf.numpy(), patches, casting="no")
        with torch.cuda.stream(self.stream):
            xd = buf.to(self.device, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(self.stream)
        self.events[k] = ev
        return xd, ev


def device_batches(
    make: Any, chunks: Iterable[np.ndarray], device: Any, depth: int = 4
) -> Iterator[tuple[Any, Any, np.ndarray]]:
    """``(make(chunk) on the device, ready event, chunk)`` made by a thread, in order.

    The thread works on its own stream, ``depth`` batches ahead; the compute stream waits on
    each batch's event (see :func:`run_model_cuda`).
    """
    import torch

    # high priority: the few short kernels that cut patches are scheduled between the model's
    # kernels instead of queueing behind them (the model is never starved of the next batch)
    stream = torch.cuda.Stream(device, priority=-1)
    stream.wait_stream(torch.cuda.current_stream(device))  # e.g. tiles of the open-time check
    return _produce(make, chunks, stream, depth)


def _produce(
    make: Any, chunks: Iterable[np.ndarray], stream: Any, depth: int
) -> Iterator[tuple[Any, Any, np.ndarray]]:
    import torch

    def job(chunk: np.ndarray) -> tuple[Any, Any]:
        with torch.cuda.stream(stream):
            x = make(chunk)
            ev = torch.cuda.Event()
            ev.record(stream)
        return x, ev

    with ThreadPoolExecutor(1, thread_name_prefix="gpu-decode") as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((pool.submit(job, chunk), chunk))
            if len(pending) > depth:
                fut, c = pending.popleft()
                yield (*fut.result(), c)
        while pending:
            fut, c = pending.popleft()
            yield (*fut.result(), c)


def run_model_cuda(
    model: Any,
    batches: Iterable[tuple],
    *,
    device: Any,
    amp: bool = True,
    profile: bool = False,
    bar: Any = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Run `model` over batches on a CUDA device; return coords, float32 probabilities, timings.

    Args:
        model: Takes uint8 ``[N, H, W, 3]`` on the device, returns logits.
        batches: ``(uint8 numpy batch, coords)`` from the host, or ``(device tensor, event,
            coords)`` from :func:`device_batches`.
        device: The CUDA device. amp: bf16 autocast. bar: a progress bar (``update(n)``).
        profile: time each model call with CUDA events (``model_busy_s``: GPU time in the model).
    """
    import torch

    # a stream of its own, not the legacy default stream: a library call that synchronises the
    # default stream (a plain cudaMemcpy, say, in a decoder) must not wait for queued model calls
    compute = torch.cuda.Stream(device)
    compute.wait_stream(torch.cuda.current_stream(device))  # e.g. the model's weights conversion
    staging = _Staging(device)
    coords_all: list[np.ndarray] = []
    probs_all: list[Any] = []
    in_flight: deque = deque()
    events: list[tuple[Any, Any]] = []
    first_s = None
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.cuda.stream(compute):
        for item in batches:
            first_s = time.perf_counter() - t0 if first_s is None else first_s
            if len(item) == 3:
                x, ready, coords = item
            else:
                x, ready = staging.to_device(item[0])
                coords = item[1]
            compute.wait_event(ready)
            x.record_stream(compute)  # made on another stream: not reused before the model ran
            if profile:
                events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)))
                events[-1][0].record(compute)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
                probs = torch.softmax(model(x).float(), dim=1)
            if profile:
                events[-1][1].record(compute)
            in_flight.append(torch.cuda.Event())
            in_flight[-1].record(compute)
            if len(in_flight) > MAX_IN_FLIGHT:
                in_flight.popleft().synchronize()
            probs_all.append(probs)
            coords_all.append(np.asarray(coords, np.int64))
            if bar is not None:
                bar.update(len(coords))
    torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    model_s = sum(s.elapsed_time(e) for s, e in events) / 1000.0
    n_cls = probs_all[0].shape[1] if probs_all else 0
    probs_np = torch.cat(probs_all).cpu().numpy() if probs_all else np.zeros((0, n_cls), np.float32)
    coords_np = np.concatenate(coords_all) if coords_all else np.zeros((0, 2), np.int64)
    stats = {"predict_s": wall, "model_busy_s": model_s, "first_batch_s": first_s or 0.0}
    return coords_np, probs_np, stats
