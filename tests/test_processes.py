"""Owners of records and workers that die with their parent: real processes, real kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from autoscope.procs import Owner, me, still_running

PY = sys.executable


def _parent(script: str, *args: str) -> tuple[subprocess.Popen, list[int]]:
    """Start `script` as a parent process; it prints `ready <pid> <pid> ...` once its workers run.

    Returns:
        (the parent, the pids of all its descendants once it is ready).
    """
    proc = subprocess.Popen(
        [PY, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("ready"), f"parent did not start: {line!r} {proc.stderr.read()}"
    kids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    return proc, kids


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_owner_alive_dead_reused_and_other_host() -> None:
    here = me()
    assert here.pid == os.getpid() and here.alive() is True
    done = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(done.stdout)
    assert Owner(here.host, dead_pid, here.start).alive() is False  # the pid is free
    assert Owner(here.host, here.pid, here.start - 3600).alive() is False  # the pid was reused
    assert Owner(socket.gethostname() + "-elsewhere", dead_pid, 0.0).alive() is None


POOL = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from autoscope.procs import die_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    while len(pool._processes) < 2:
        time.sleep(0.05)
    time.sleep(1.0)  # the initializers ran
    print("ready", flush=True)
    time.sleep(120)
"""


def test_pool_workers_die_with_a_killed_parent() -> None:
    proc, kids = _parent(POOL)
    assert len(kids) >= 2
    _kill9(proc)
    assert still_running(kids, 5.0) == []


WATCHED = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import os, threading, time\\n"
    "from autoscope.procs import _watch\\n"
    "threading.Thread(target=_watch, args=(os.getppid(),), daemon=True).start()\\n"
    "print('ok', flush=True)\\n"
    "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print("ready", flush=True)
time.sleep(120)
"""


def test_watchdog_alone_ends_an_orphan() -> None:
    """The fallback where no death signal exists: the child sees its parent change and ends."""
    proc, kids = _parent(WATCHED)
    assert len(kids) == 1
    _kill9(proc)
    assert still_running(kids, 5.0) == []


READER = """
import sys, time
import numpy as np
from autoscope.slides.parallel import iter_batches

if __name__ == "__main__":
    coords = np.array([[x, y] for y in range(0, 2048, 64) for x in range(0, 2048, 64)], np.int64)
    it = iter_batches(sys.argv[1], coords, 0.5, 64, 8, 2, 2)
    next(it)
    print("ready", flush=True)
    time.sleep(120)
"""


def test_patch_readers_die_with_a_killed_parent(synth_slide) -> None:
    """`slides.parallel.iter_batches` workers (and their forkserver) end with the parent."""
    proc, kids = _parent(READER, str(synth_slide.path))
    assert len(kids) >= 3  # the forkserver and two readers at least
    _kill9(proc)
    assert still_running(kids, 5.0) == []


def test_die_with_parent_when_the_parent_is_already_gone(tmp_path: Path) -> None:
    """A worker whose parent died before it armed the death signal ends at once."""
    code = "from autoscope.procs import die_with_parent; die_with_parent(1); print('alive')"
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "alive" not in done.stdout


LISTENER = """
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("ready", s.getsockname()[1], flush=True)
time.sleep(120)
"""


def test_ui_check_names_the_process_holding_the_port(tmp_path: Path, capsys) -> None:
    """`autoscope ui --check` on a port another server holds: exit 2 naming that process."""
    from autoscope.cli import main
    from autoscope.procs import port_holder

    proc = subprocess.Popen([PY, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split()[1])
        assert port_holder("127.0.0.1", port).startswith(f"process {proc.pid} (")
        args = ["ui", "demo", f"paths.workspace={tmp_path}", "--port", str(port), "--check"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"port {port}" in err and f"process {proc.pid}" in err and "--port" in err
    finally:
        proc.kill()
        proc.wait()
    assert port_holder("127.0.0.1", port) is None  # free again: the check lets the UI start


ARMED = """
import ctypes
from autoscope.procs import die_with_parent
die_with_parent()
die_with_parent()  # a second call changes nothing
value = ctypes.c_int(0)
ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
print(value.value)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_kernel_death_signal_is_sigkill() -> None:
    done = subprocess.run([PY, "-c", ARMED], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == [str(int(signal.SIGKILL))]
