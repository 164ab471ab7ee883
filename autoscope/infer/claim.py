"""Per-slide claims: a lock file created with O_EXCL that holds its owner's host and pid.

Inference jobs that overlap (reruns, shards of a Hydra multirun, two people on one workspace)
claim a slide before running it, so no slide is written twice at the same time. A claim whose
owner died (same host, pid gone) is stale and taken over; a claim from another host is honoured
until it is removed (the pid cannot be checked from here).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_SUFFIX = ".lock"


def lock_path(slide_dir: Path) -> Path:
    """The claim file of a slide's output folder: `.<name>.lock` beside it."""
    slide_dir = Path(slide_dir)
    return slide_dir.with_name(f".{slide_dir.name}{LOCK_SUFFIX}")


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _stale(text: str) -> bool:
    """Whether a claim's content names a dead process on this host (or is unreadable)."""
    host, _, pid = text.strip().rpartition(" ")
    if not pid.isdigit():
        return True  # half-written or foreign content: nobody can own it
    return host == socket.gethostname() and not _alive(int(pid))


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
