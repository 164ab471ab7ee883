"""Parallel patch reading: worker processes, each with its own slide handle, in-order batches.

The parent hands out batches of coordinates; each worker reads its patches with its own
:class:`~autoscope.slides.reader.TileReader` (opened once) straight into a slot of a shared-memory
ring, and the parent yields the batches in input order. Only ``queue_depth`` batches are ever in
flight (one ring slot each), so memory stays bounded however long the coordinate list.

Workers start from a ``forkserver`` (a clean process, safe with torch and threads in the parent)
that preloads the reader; the parent's main script is not re-run in them. Shared memory beat
pickled arrays through the result queue in ``benchmarks/tiles.py`` (``transport="pickle"`` is
kept to compare).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import sys
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from autoscope.errors import UserError
from autoscope.slides.tiff_fast import ALIGN_OFFSET, empty_rgb

RING_OFFSET = ALIGN_OFFSET  # shared memory is page-aligned; decode targets should not be
POLL_S = 0.5  # how often the parent checks that its workers are alive while waiting


def _read_batch(reader: Any, chunk: np.ndarray, mpp: float, patch_px: int, out: np.ndarray) -> None:
    for i, (x, y) in enumerate(chunk.tolist()):
        reader.read_patch(x, y, mpp, patch_px, out=out[i])


def _worker(
    path: str,
    mpp_x: float | None,
    mpp: float,
    patch_px: int,
    shm_name: str | None,
    ring_shape: tuple[int, ...],
    tasks: Any,
    results: Any,
) -> None:
    """Worker loop: open the slide once, then read batches until the ``None`` sentinel.

    The worker dies with the process that started it (`procs.die_with_parent`: its forkserver,
    which itself ends with the parent), so a killed parent leaves no reader running.
    """
    from autoscope.procs import die_with_parent
    from autoscope.slides.reader import open_reader

    die_with_parent()
    shm = None
    try:
        reader = open_reader(path, mpp_x)
        if shm_name is not None:
            shm = SharedMemory(name=shm_name)  # same resource tracker as the parent
            ring = np.ndarray(ring_shape, np.uint8, buffer=shm.buf, offset=RING_OFFSET)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        results.put((-1, -1, (type(err).__name__, str(err))))
        return
    parent = mp.parent_process()
    try:
        while True:
            try:
                task = tasks.get(timeout=POLL_S)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    break  # the parent was killed: no sentinel will come
                continue
            if task is None:
                break
            idx, slot, chunk = task
            try:
                if shm is not None:
                    _read_batch(reader, chunk, mpp, patch_px, ring[slot, : len(chunk)])
                    results.put((idx, slot, None))
                else:
                    arr = empty_rgb((len(chunk), patch_px, patch_px, 3))
                    _read_batch(reader, chunk, mpp, patch_px, arr)
                    results.put((idx, slot, arr))
            except Exception as err:  # noqa: BLE001 - one bad batch is reported, not fatal here
                results.put((idx, slot, (type(err).__name__, f"batch {idx}: {err}")))
    finally:
        reader.close()
        if shm is not None:
            del ring
            shm.close()


def _raise(kind: str, msg: str) -> None:
    if kind == "UserError":
        raise UserError(msg)
    raise RuntimeError(f"patch reading worker failed: {kind}: {msg}")


def iter_batches(
    path: str,
    coords: np.ndarray,
    mpp: float,
    patch_px: int,
    batch_size: int,
    workers: int,
    queue_depth: int,
    mpp_x: float | None = None,
    *,
    transport: str = "shm",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(patches uint8 [B, patch_px, patch_px, 3], coords int64 [B, 2])`` in input order.

    Args:
        path: The slide file.
        coords: ``(N, 2)`` level-0 top-left corners (see :mod:`autoscope.slides.samplers`).
        mpp: Target microns per pixel of the patches.
        patch_px: Patch side in pixels at ``mpp``.
        batch_size: Patches per batch (the last batch may be smaller).
        workers: Worker processes; 0 reads in this process.
        queue_depth: Batches in flight at most (bounds memory: depth x batch bytes).
        mpp_x: Level-0 mpp overriding the file's.
        transport: ``"shm"`` (shared-memory ring) or ``"pickle"`` (arrays through the queue).

    Raises:
        UserError: The slide cannot be opened or has no mpp.
        RuntimeError: A worker failed or died.
    """
    coords = np.asarray(coords, np.int64).reshape(-1, 2)
    if batch_size < 1 or queue_depth < 1 or workers < 0:
        raise UserError("batch_size and queue_depth must be >= 1 and workers >= 0")
    if workers == 0:
        yield from _iter_local(path, coords, mpp, patch_px, batch_size, mpp_x)
    elif len(coords):
        yield from _iter_workers(
            path, coords, mpp, patch_px, batch_size, workers, queue_depth, mpp_x, transport
        )


def _iter_local(
    path: str,
    coords: np.ndarray,
    mpp: float,
    patch_px: int,
    batch_size: int,
    mpp_x: float | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from autoscope.slides.reader import open_reader

    with open_reader(path, mpp_x) as reader:
        for start in range(0, len(coords), batch_size):
            chunk = coords[start : start + batch_size]
            out = empty_rgb((len(chunk), patch_px, patch_px, 3))
            _read_batch(reader, chunk, mpp, patch_px, out)
            yield out, chunk.copy()


def _iter_workers(
    path: str,
    coords: np.ndarray,
    mpp: float,
    patch_px: int,
    batch_size: int,
    workers: int,
    queue_depth: int,
    mpp_x: float | None,
    transport: str,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if transport not in ("shm", "pickle"):
        raise UserError(f"transport {transport!r} is not one of shm, pickle")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["autoscope.slides.reader", "autoscope.procs"])
    n_batches = -(-len(coords) // batch_size)
    depth = min(queue_depth, n_batches)
    ring_shape = (depth, batch_size, patch_px, patch_px, 3)
    size = RING_OFFSET + int(np.prod(ring_shape))
    shm = SharedMemory(create=True, size=size) if transport == "shm" else None
    ring = None
    if shm is not None:
        ring = np.ndarray(ring_shape, np.uint8, buffer=shm.buf, offset=RING_OFFSET)
    tasks, results = ctx.Queue(), ctx.Queue()
    args = (path, mpp_x, mpp, patch_px, shm.name if shm else None, ring_shape, tasks, results)
    procs = [ctx.Process(target=_worker, args=args, daemon=True) for _ in range(workers)]
    free = list(range(depth - 1, -1, -1))
    submitted = 0
    done: dict[int, tuple[int, Any]] = {}
    try:
        with _main_not_rerun():
            for p in procs:
                p.start()
        for want in range(n_batches):
            while free and submitted < n_batches:
                chunk = coords[submitted * batch_size : (submitted + 1) * batch_size]
                tasks.put((submitted, free.pop(), chunk))
                submitted += 1
            while want not in done:
                try:
                    idx, slot, payload = results.get(timeout=POLL_S)
                except queue.Empty:
                    dead = [p.exitcode for p in procs if p.exitcode is not None]
                    if dead:
                        raise RuntimeError(
                            f"a patch reading worker died (exit {dead[0]})"
                        ) from None
                    continue
                if isinstance(payload, tuple):
                    _raise(*payload)
                done[idx] = (slot, payload)
            slot, payload = done.pop(want)
            chunk = coords[want * batch_size : (want + 1) * batch_size]
            batch = ring[slot, : len(chunk)].copy() if ring is not None else payload
            free.append(slot)
            yield batch, chunk.copy()
    finally:
        _shutdown(procs, tasks, results)
        if shm is not None:
            del ring
            shm.close()
            shm.unlink()


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start workers without re-running the parent's ``__main__`` in them.

    forkserver/spawn children normally re-import the parent's main script (a training script
    would import torch again in every worker). The workers run only this module, so the main
    module's ``__file__``/``__spec__`` are hidden from multiprocessing while they start.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        if "__spec__" in saved:
            main.__spec__ = None
        yield
    finally:
        main.__dict__.update(saved)


def _shutdown(procs: list[Any], tasks: Any, results: Any) -> None:
    """Stop the workers: sentinel, short join, then terminate whatever still runs."""
    for p in procs:
        if p.is_alive():
            tasks.put(None)
    for p in procs:
        if p.pid is not None:
            p.join(timeout=2.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
    for q in (tasks, results):
        q.cancel_join_thread()
        q.close()
