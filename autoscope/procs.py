"""Who owns a record, whether that owner still runs, and workers that die with their parent.

An owner is `(host, pid, start)`: the host name, the process id and the process's start time
(psutil's `create_time`, seconds since the epoch), so that a pid the system reused for another
process is never taken for the owner. Worker processes call `die_with_parent()` first thing:
on Linux the kernel sends them SIGKILL when their parent dies (`PR_SET_PDEATHSIG`), and a
watchdog thread (every platform) kills them when their parent's pid changes, so a `kill -9` of
the parent leaves no worker running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

START_TOLERANCE_S = 1.0  # start times read twice differ by clock-tick rounding at most
WATCH_S = 0.5  # how often the watchdog looks at the parent's pid
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Owner:
    """A process that owns a record: host name, pid and start time (epoch seconds)."""

    host: str
    pid: int
    start: float

    def alive(self) -> bool | None:
        """True when the owner still runs, False when it is gone, None on another host."""
        if self.host != socket.gethostname():
            return None
        started = start_time(self.pid)
        return started is not None and abs(started - self.start) <= START_TOLERANCE_S


def start_time(pid: int) -> float | None:
    """The start time of process `pid` (epoch seconds), or None when no such process runs."""
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:  # dead, only not reaped by its parent yet
            return None
        return float(proc.create_time())
    except (psutil.Error, ValueError, OverflowError):
        return None


def me() -> Owner:
    """This process as an owner."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, start_time(pid) or 0.0)


_WATCHED: set[int] = set()  # parents a watchdog of this process already watches


def die_with_parent(parent_pid: int | None = None, *, kernel: bool = True) -> None:
    """Make this (worker) process die when its parent does (calling it again changes nothing).

    Args:
        parent_pid: the parent the worker belongs to (default: the current parent). When it is
            already gone (it died before this call), the worker ends at once.
        kernel: also arm Linux's parent-death signal. The kernel sends it when the *thread*
            that started the worker ends, so pass False in workers of pools that may start
            processes from a helper thread (joblib's loky): the watchdog alone then.
    """
    parent = os.getppid() if parent_pid is None else int(parent_pid)
    if parent in _WATCHED:
        return
    if kernel and sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    _WATCHED.add(parent)
    threading.Thread(target=_watch, args=(parent,), name="die-with-parent", daemon=True).start()


def _watch(parent: int) -> None:
    """Kill this process once its parent is gone (it was re-parented: its ppid changed)."""
    stop = threading.Event()
    while not stop.wait(WATCH_S):
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)


def port_holder(host: str, port: int) -> str | None:
    """Who holds TCP `port` on `host`, or None when this process could bind it now.

    Returns:
        e.g. `process 1234 (python -m http.server 5000)`, or `another process` when the
        system does not tell which.
    """
    import psutil

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a holder
        try:
            sock.bind((host, int(port)))
            return None
        except OSError:
            pass
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        conns = []
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == int(port) and c.pid:
            try:
                cmd = " ".join(" ".join(psutil.Process(c.pid).cmdline()).split())[:80]
            except psutil.Error:
                cmd = "?"
            return f"process {c.pid} ({cmd})"
    return "another process"


def stop_group(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM a process group led by `proc` (a `start_new_session` child), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


def still_running(pids: list[int], within_s: float = 5.0) -> list[int]:
    """The pids among `pids` still running after up to `within_s` s (zombies count as gone)."""
    deadline = time.monotonic() + within_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if start_time(p) is not None]
        time.sleep(0.1)
    return alive
