"""The one lock helper for shared stores: an inter-process file lock that names its holder.

Writers of a shared store (the slide registry, a dataset's publish, an archive's versions) hold
`store_lock(store, what)` while they read, merge and write, so concurrent processes never lose
an update. The lock is `fcntl.flock` on a lock file that is never removed (waiters share its
inode); Linux maps `flock` to POSIX locks on NFS, so it also holds across machines sharing a
file system. The holder writes `pid host` into the lock file, so a waiter can say who it waits
for. The kernel drops the lock when its holder dies, even by kill -9: a lock is never stale.

Lock files live in `lock_dir` when given (the workspace's `outputs/_state/locks`, ignored by git
and DVC, named after the store's path relative to `root`), else beside the store
(`.<name>.lock`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoscope.errors import UserError

DEFAULT_TIMEOUT_S = 600.0  # how long a writer waits for a store before giving up
NOTICE_AFTER_S = 1.0  # a wait longer than this is announced (one line)
POLL_S = 0.05

_held = threading.local()  # per thread: lock file -> depth (re-entrant within one thread)


def lock_file(
    store: Path | str, lock_dir: Path | str | None = None, root: Path | None = None
) -> Path:
    """The lock file of `store`: `<lock_dir>/<store path relative to root>.lock` or `.<name>.lock`.

    Args:
        store: The store's file or folder (it need not exist yet).
        lock_dir: A folder for lock files (e.g. `Stores.state / "locks"`); None: beside the store.
        root: The workspace: a store inside it is named by its relative path, the same on every
            machine that mounts the workspace elsewhere.
    """
    store = Path(os.path.abspath(store))
    if lock_dir is None:
        return store.with_name(f".{store.name}.lock")
    rel = store
    if root is not None and store.is_relative_to(Path(os.path.abspath(root))):
        rel = store.relative_to(Path(os.path.abspath(root)))
    key = "%".join(p for p in rel.parts if p != os.sep)
    if len(key) > 200:
        key = f"{store.name[:80]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return Path(lock_dir) / f"{key}.lock"


def holder(path: Path) -> str:
    """Who holds a lock file, as `pid N on host H` (from its content), or `an unknown process`."""
    try:
        pid, _, host = path.read_text().strip().partition(" ")
    except OSError:
        pid, host = "", ""
    return f"pid {pid} on host {host}" if pid.isdigit() else "an unknown process"


def _try(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def store_lock(
    store: Path | str,
    what: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    lock_dir: Path | str | None = None,
    root: Path | None = None,
    say: Callable[[str], None] = print,
) -> Iterator[Path]:
    """Hold the inter-process lock of `store` for the `with` block; yields the lock file.

    Re-entrant within one thread; other threads and processes wait. A wait longer than about a
    second prints one line `waiting for <what> (held by pid N on host H)`.

    Args:
        store: The store's file or folder.
        what: The store in words, for the messages (e.g. `the slide registry of demo`).
        timeout_s: Longest wait before giving up.
        lock_dir: Folder of lock files (see `lock_file`); None: beside the store.
        root: The workspace (see `lock_file`).
        say: Where the waiting line goes.

    Raises:
        UserError: the lock was not free within `timeout_s` (one line naming the holder), or
            its lock file cannot be created (e.g. a read-only folder).
    """
    path = lock_file(store, lock_dir, root)
    depth: dict[str, int] = _held.__dict__.setdefault("depth", {})
    key = str(path)
    if depth.get(key):
        depth[key] += 1
        try:
            yield path
        finally:
            depth[key] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        found = next((d for d in path.parents if d.exists()), None)
        why = f"{found} is not a folder" if found and not found.is_dir() else e.strerror
        raise UserError(f"cannot lock {what}: {path}: {why}") from None
    try:
        t0 = time.monotonic()
        told = False
        while not _try(fd):
            waited = time.monotonic() - t0
            if waited >= timeout_s:
                raise UserError(
                    f"gave up waiting for {what} after {timeout_s:g}s: held by {holder(path)}"
                    f" (lock {path})"
                )
            if not told and waited >= NOTICE_AFTER_S:
                say(f"waiting for {what} (held by {holder(path)})")
                told = True
            time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        depth[key] = 1
        try:
            yield path
        finally:
            depth.pop(key, None)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def in_stores(stores: Any) -> dict[str, Path]:
    """`store_lock` keywords placing lock files in a project's `Stores.state / "locks"`.

    The state folder is ignored by git and DVC, so a lock file never changes a tracked store.
    """
    return {"lock_dir": Path(stores.state) / "locks", "root": Path(stores.workspace)}
