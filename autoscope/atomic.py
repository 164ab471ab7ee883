"""The one atomic-write rule: write beside the target under a temporary name, then rename.

Every file or folder AutoSCOPE produces goes through these helpers, so a crash or a bad input
never leaves a half-written result behind: readers see the old version or the new one.
Temporary names start with `.` and contain `.tmp-<pid>-<start>-<host>` (the owner's pid, its
start time in centiseconds and a short tag of its host), so a later run recognises the debris
of a dead owner and `sweep_stale` removes it, while a live writer's temporaries are left alone.
What is published gets the usual permissions of the process umask (files `0o666 & ~umask`,
folders `0o777 & ~umask`), never the owner-only modes of `tempfile`, so a team sharing a server
can read each other's results as its umask allows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from autoscope.procs import START_TOLERANCE_S, start_time

TMP_MARK = ".tmp-"  # every temporary name holds this (plus the writer's pid, start, host)
# `.tmp-<pid>[-<start>-<host>]`; names written before start and host were recorded hold the pid only
_OWNER = re.compile(re.escape(TMP_MARK) + r"(\d+)(?:-(\d+)-([0-9a-f]{6}))?(?![0-9])")
_tags: dict[int, str] = {}


def host_tag(host: str | None = None) -> str:
    """Six hex digits naming a host (of `socket.gethostname()` by default)."""
    return hashlib.sha1((host or socket.gethostname()).encode()).hexdigest()[:6]


def owner_tag() -> str:
    """This process's part of temporary names: `<pid>-<start in centiseconds>-<host tag>`."""
    pid = os.getpid()
    if pid not in _tags:  # a forked child gets its own
        started = start_time(pid) or 0.0
        _tags[pid] = f"{pid}-{round(started * 100)}-{host_tag()}"
    return _tags[pid]


def stale_owner(name: str) -> int | None:
    """The pid of a temporary name's owner when that owner is gone on this host, else None.

    Gone: the pid is dead, or alive with another start time (a reused pid). Temporaries of
    other hosts and names that are not temporaries are never stale here.
    """
    m = _OWNER.search(name)
    if m is None:
        return None
    pid, started, host = int(m[1]), m[2], m[3]
    if host is not None and host != host_tag():
        return None
    now = start_time(pid)
    if now is None:
        return pid
    if started is None:
        return None  # an old-style name of a live pid: keep it
    return pid if abs(now - int(started) / 100) > START_TOLERANCE_S else None


def sweep_stale(folder: Path | str, say: Callable[[str], None] = print) -> list[Path]:
    """Remove the temporary files and folders in `folder` whose owner is gone; one line each.

    The debris a killed writer leaves (`atomic_file`, `atomic_dir`, `scratch_dir`,
    `publish_dir` names) is recognised by its name; live writers' temporaries are kept.

    Returns:
        the removed paths.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for p in entries:
        if not p.name.startswith(".") or TMP_MARK not in p.name:
            continue
        pid = stale_owner(p.name)
        if pid is None:
            continue
        # claim it first: one rename wins, so concurrent sweepers remove (and report) it once;
        # the claimed name is this live process's temp, swept in turn should this one die
        tomb = folder / f".swept{TMP_MARK}{owner_tag()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(p, tomb)
        except FileNotFoundError:
            continue  # another sweeper took it
        if tomb.is_dir() and not tomb.is_symlink():
            shutil.rmtree(tomb, ignore_errors=True)
        else:
            tomb.unlink(missing_ok=True)
        removed.append(p)
        say(f"removed stale temp {p.name} of dead pid {pid}")
    return removed


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (`/proc/self/status`).

    Elsewhere it is read by setting and restoring it (`os.umask`), the only portable way.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a published file: `0o666` less the umask (0o644 with umask 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a published folder: `0o777` less the umask (0o755 with umask 022)."""
    return 0o777 & ~current_umask()


def temp_path(final: Path) -> Path:
    """A hidden sibling of `final` for this process (`.name.tmp-<pid>-<start>-<host>`)."""
    final = Path(final)
    return final.with_name(f".{final.name}{TMP_MARK}{owner_tag()}")


@contextmanager
def atomic_file(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    On an exception the temporary file is removed and `path` is left as it was. The published
    file has the umask's usual mode (`file_mode`), not `mkstemp`'s owner-only 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}{owner_tag()}.")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> Path:
    """Write `text` to `path` atomically; returns `path`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: Path | str, data: Any, *, sort_keys: bool = False) -> Path:
    """Write `data` as indented JSON (non-JSON values as `str`) to `path` atomically."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n"
    return write_text(path, text)


@contextmanager
def atomic_dir(
    final: Path | str, guard: Callable[[], AbstractContextManager[Any]] | None = None
) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final`.

    An older `final` is moved aside first and removed after the swap, so readers never see a
    half-filled folder. On an exception the temporary folder is removed. The published folder
    has the umask's usual mode (`dir_mode`). `guard` (e.g. a `store_lock` of the folder) is held
    around the swap, so concurrent writers of one folder publish one after the other.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.chmod(tmp, dir_mode())
        with guard() if guard is not None else nullcontext():
            publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def scratch_dir(parent: Path | str, name: str = "scratch") -> Iterator[Path]:
    """Yield a fresh hidden work folder in `parent` (`.name.tmp-<owner>.<random>`), removed on exit.

    For intermediate files whose results are copied elsewhere; like every temporary name it is
    recognisable debris if the process dies.
    """
    Path(parent).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}{TMP_MARK}{owner_tag()}."))
    os.chmod(tmp, dir_mode())
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished temporary folder onto `final_dir`, replacing an older version."""
    old = final_dir.with_name(f".{final_dir.name}.old{TMP_MARK}{owner_tag()}")
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
