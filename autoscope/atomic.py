"""The one atomic-write rule: write beside the target under a temporary name, then rename.

Every file or folder AutoSCOPE produces goes through these helpers, so a crash or a bad input
never leaves a half-written result behind: readers see the old version or the new one.
Temporary names start with `.` and contain `.tmp-`, so a later run can recognise debris.
What is published gets the usual permissions of the process umask (files `0o666 & ~umask`,
folders `0o777 & ~umask`), never the owner-only modes of `tempfile`, so a team sharing a server
can read each other's results as its umask allows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"  # every temporary name holds this (plus the writer's pid)


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
    """A hidden sibling of `final` for this process (`.name.tmp-<pid>`)."""
    final = Path(final)
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")


@contextmanager
def atomic_file(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    On an exception the temporary file is removed and `path` is left as it was. The published
    file has the umask's usual mode (`file_mode`), not `mkstemp`'s owner-only 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}{os.getpid()}.")
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
def atomic_dir(final: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final`.

    An older `final` is moved aside first and removed after the swap, so readers never see a
    half-filled folder. On an exception the temporary folder is removed. The published folder
    has the umask's usual mode (`dir_mode`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.chmod(tmp, dir_mode())
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def scratch_dir(parent: Path | str, name: str = "scratch") -> Iterator[Path]:
    """Yield a fresh hidden work folder in `parent` (`.name.tmp-<pid>.<random>`), removed on exit.

    For intermediate files whose results are copied elsewhere; like every temporary name it is
    recognisable debris if the process dies.
    """
    Path(parent).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}{TMP_MARK}{os.getpid()}."))
    os.chmod(tmp, dir_mode())
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished temporary folder onto `final_dir`, replacing an older version."""
    old = final_dir.with_name(f".{final_dir.name}.old{TMP_MARK}{os.getpid()}")
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
