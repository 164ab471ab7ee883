"""Many slides, one model: resumable, one failure never stops the rest, instances as processes."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from autoscope.errors import UserError
from autoscope.infer.claim import claimed
from autoscope.infer.spec import InferSpec

LIST_SUFFIXES = (".txt", ".lst", ".list")  # a file of slide paths, one per line


@dataclass(frozen=True)
class SlideJob:
    """One slide to run: where it is, the output folder name and an MPP override."""

    path: str
    name: str
    mpp_x: float | None = None
    slide_id: str | None = None


def shard_jobs(jobs: Sequence[SlideJob], shard: int, shards: int) -> list[SlideJob]:
    """Part `shard` of `shards` of the slide list, sorted by output name (the same in every job).

    Slides are dealt round-robin, so the parts differ by at most one slide and cover every slide
    exactly once.

    Raises:
        UserError: `shards` < 1 or `shard` outside 0..shards-1.
    """
    if int(shards) < 1:
        raise UserError(f"infer.shards={shards}: must be at least 1")
    if not 0 <= int(shard) < int(shards):
        raise UserError(
            f"infer.shard={shard} is out of range for infer.shards={shards} (0..{int(shards) - 1})"
        )
    ordered = sorted(jobs, key=lambda j: (j.name, j.path))
    return ordered[int(shard) :: int(shards)]


def _unique(jobs: list[SlideJob]) -> list[SlideJob]:
    """Give slides that share a file stem distinct output names (stem-<id prefix or index>)."""
    seen: dict[str, int] = {}
    for j in jobs:
        seen[j.name] = seen.get(j.name, 0) + 1
    out = []
    for i, j in enumerate(jobs):
        if seen[j.name] > 1:
            j = SlideJob(j.path, f"{j.name}-{(j.slide_id or str(i))[:8]}", j.mpp_x, j.slide_id)
        out.append(j)
    return out


def _looks_like_path(spec: str) -> bool:
    """A path (`/x`, `dir/x.svs`, `x.tif`) rather than a registry query (`status == 'ok'`)."""
    if any(op in spec for op in ("==", "!=", "<", ">", " in ", " and ", " or ", "(")):
        return False
    return "/" in spec or bool(Path(spec).suffix)


def _from_row(row: Any) -> SlideJob:
    mpp = row.get("mpp_x")
    mpp = float(mpp) if mpp is not None and mpp == mpp and row.get("mpp_source") != "file" else None
    return SlideJob(str(row["path"]), str(row["name"]), mpp, str(row["slide_id"]))


def select_slides(spec: str, registry: Any, extensions: Sequence[str] = ()) -> list[SlideJob]:
    """Slides named by a registry query, a list file or a glob/folder.

    Registry rows give names and MPP overrides (metadata or recipe); paths not in the registry
    are read with the MPP in their file.

    Raises:
        UserError: the query is invalid or matches nothing.
    """
    spec = str(spec).strip()
    by_path = {str(r["path"]): r for _, r in registry.iterrows()} if len(registry) else {}
    p = Path(spec).expanduser()
    paths: list[str] | None = None
    if p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
        lines = [ln.strip() for ln in p.read_text().splitlines()]
        paths = [ln for ln in lines if ln and not ln.startswith("#")]
    elif p.is_dir():
        paths = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in extensions)
    elif p.is_file() or any(ch in spec for ch in "*?[") or _looks_like_path(spec):
        paths = sorted(glob.glob(str(p)))
    if paths is not None:
        if not paths:
            raise UserError(f"infer.slides: no slide matches '{spec}'")
        jobs = []
        for s in paths:
            full = str(Path(s).expanduser().resolve())
            row = by_path.get(full)
            jobs.append(_from_row(row) if row is not None else SlideJob(full, Path(s).stem))
        return _unique(jobs)
    if registry.empty:
        raise UserError(f"infer.slides: query '{spec}' but no slides are registered (ingest first)")
    try:
        rows = registry.query(spec, engine="python")
    except Exception as e:  # noqa: BLE001 - pandas raises many types for a bad expression
        raise UserError(
            f"infer.slides: bad registry query '{spec}' ({type(e).__name__}: {e})"
        ) from None
    if rows.empty:
        raise UserError(f"infer.slides: registry query '{spec}' matches no slide")
    return _unique([_from_row(r) for _, r in rows.iterrows()])


_WORKER: dict[str, Any] = {}


def _init_worker(loader: Callable[[], tuple[Any, InferSpec]], threads: int | None) -> None:
    """Per instance: load the model once (and share the CPU fairly between instances)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    _WORKER["model"], _WORKER["spec"] = loader()


def _init_instance(
    loader: Callable[[], tuple[Any, InferSpec]], threads: int | None, parent_pid: int
) -> None:
    """An instance process: die with the parent (`procs.die_with_parent`), then load the model."""
    from autoscope.procs import die_with_parent

    die_with_parent(parent_pid)
    _init_worker(loader, threads)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(
    job: SlideJob, out_dir: str, resume: bool = True, root: str | None = None
) -> dict[str, Any]:
    """Run the loaded model on one slide; failures come back as a result, never raised.

    `root` (the workspace) makes the summary's paths relative to it (`writers.summarise`).

    The slide is claimed first (`claim.claimed`): a slide another live job is running comes
    back `busy`, one that job finished meanwhile `skipped`; neither is written again.
    """
    from autoscope.infer.writers import is_done
    from autoscope.tasks import entry

    t0 = time.perf_counter()
    slide_dir = Path(out_dir) / job.name
    res: dict[str, Any] = {**asdict(job), "out": str(slide_dir)}
    with claimed(slide_dir) as mine:
        if not mine:
            return {**res, "status": "busy"}
        if resume and is_done(slide_dir):
            return {**res, "status": "skipped"}
        try:
            infer_slide = entry(_WORKER["spec"].task, "engine")  # the task family's engine
            summary = infer_slide(
                _WORKER["model"],
                job.path,
                out_dir,
                _WORKER["spec"],
                mpp_x=job.mpp_x,
                name=job.name,
                root=root,
                slide_id=job.slide_id,
            )
            res.update(status="ok", tiles=summary["tiles"]["total"], areas_mm2=summary["areas_mm2"])
        except Exception as e:  # noqa: BLE001 - one bad slide is reported, the rest go on
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            res.update(status="failed", error=f"{type(e).__name__}: {msg}")
    res.update(seconds=time.perf_counter() - t0, peak_rss_mb=_peak_rss_mb(), pid=os.getpid())
    return res


def _line(k: int, n: int, r: dict[str, Any]) -> str:
    head = f"[{k}/{n}] {r['name']}:"
    if r["status"] == "failed":
        return f"{head} FAILED {r['error']}"
    if r["status"] == "busy":
        return f"{head} busy (another job is running it): left to that job"
    if r["status"] == "skipped":
        return f"{head} finished meanwhile by another job: skipped"
    rate = r["tiles"] / r["seconds"] if r["seconds"] else 0.0
    return f"{head} {r['tiles']} tiles in {r['seconds']:.1f}s ({rate:.0f} tiles/s) -> {r['out']}"


def run_slides(
    jobs: Sequence[SlideJob],
    out_dir: Path,
    loader: Callable[[], tuple[Any, InferSpec]],
    *,
    instances: int = 1,
    resume: bool = True,
    echo: Callable[[str], None] = print,
    root: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every slide not done yet; `loader()` -> (model, InferSpec) in each instance.

    With `instances > 1` slides are shared among spawned processes (each loads the model once and
    takes the next slide when free); `loader` must then be picklable (a module-level function or
    a `functools.partial` of one). A finished slide (`summary.json`) is skipped when `resume`;
    a slide claimed by another live job is left to it (`busy`). Summaries record paths
    relative to `root` (the workspace), never a host path.
    """
    from autoscope.infer.writers import is_done

    ws = None if root is None else str(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    todo = []
    for j in jobs:
        if resume and is_done(out_dir / j.name):
            results.append({**asdict(j), "status": "skipped", "out": str(out_dir / j.name)})
        else:
            todo.append(j)
    if results:
        echo(f"{len(results)} slide(s) already done in {out_dir}: skipped")
    n = len(todo)
    if n == 0:
        return results
    if instances <= 1 or n <= 1:
        _init_worker(loader, None)
        for k, j in enumerate(todo, 1):
            results.append(run_one(j, str(out_dir), resume, ws))
            echo(_line(k, n, results[-1]))
        return results
    threads = max(1, (os.cpu_count() or 1) // instances)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(
        min(instances, n),
        mp_context=ctx,
        initializer=_init_instance,
        initargs=(loader, threads, os.getpid()),
    ) as pool:
        futures = [pool.submit(run_one, j, str(out_dir), resume, ws) for j in todo]
        for k, fut in enumerate(as_completed(futures), 1):
            results.append(fut.result())
            echo(_line(k, n, results[-1]))
    return results
