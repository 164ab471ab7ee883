"""Per-slide claims: a lock file created with O_EXCL that holds its owner's host and pid.

Inference jobs that overlap (reruns, shards of a Hydra multirun, two people on one workspace)
claim a slide before running it, so no slide is written twice at the same time. A claim whose
owner died (same host, pid gone, or the pid reused by a process started later: the claim holds
the owner's start time) is stale and taken over; a claim from another host is honoured until it
is removed (the pid cannot be checked from here).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autoscope.procs import START_TOLERANCE_S, start_time

LOCK_SUFFIX = ".lock"


def lock_path(slide_dir: Path) -> Path:
    """The claim file of a slide's output folder: `.<name>.lock` beside it."""
    slide_dir = Path(slide_dir)
    return slide_dir.with_name(f".{slide_dir.name}{LOCK_SUFFIX}")


def _owner() -> str:
    """`<host> <pid> <start in centiseconds>` of this process."""
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {round((start_time(pid) or 0.0) * 100)}"


def _stale(text: str) -> bool:
    """Whether a claim's content names a gone process on this host (or is unreadable)."""
    host, _, rest = text.strip().partition(" ")
    pid, _, started = rest.partition(" ")
    if not pid.isdigit() or (started and not started.isdigit()):
        return True  # half-written or foreign content: nobody can own it
    if host != socket.gethostname():
        return False
    now = start_time(int(pid))
    if now is None:
        return True
    if not started:
        return False  # a claim without start time (older runs)
    return abs(now - int(started) / 100) > START_TOLERANCE_S


def _create(path: Path) -> bool:
    """Create the claim with its content in one step (hard link of a finished temp file).

    O_EXCL alone would let a racing job read the claim before its owner is written and take it
    for half-written debris; `link` publishes the complete file or fails if one exists.
    """
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}")
    tmp.write_text(_owner())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def try_claim(slide_dir: Path) -> bool:
    """Claim a slide's output folder; False when a live job holds it.

    A stale claim is moved aside under a unique name first (only one job wins that rename) and
    checked again there, so two jobs breaking the same stale claim cannot both win.
    """
    path = lock_path(slide_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _create(path):
        return True
    try:
        text = path.read_text()
    except FileNotFoundError:
        return _create(path)
    if not _stale(text):
        return False
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another job broke it first
        return _create(path)
    moved = aside.read_text()
    if not _stale(moved):  # a fresh claim replaced the stale one meanwhile: give it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return _create(path)


def release(slide_dir: Path) -> None:
    """Drop this process's claim (another owner's claim is left alone)."""
    path = lock_path(slide_dir)
    try:
        if path.read_text().strip() == _owner():
            path.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def claimed(slide_dir: Path) -> Iterator[bool]:
    """`with claimed(d) as mine:` — `mine` says whether this job holds the slide; released after."""
    mine = try_claim(slide_dir)
    try:
        yield mine
    finally:
        if mine:
            release(slide_dir)
