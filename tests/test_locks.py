"""The store lock across real processes, and concurrent real ingests that keep every row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoscope.errors import UserError
from autoscope.locks import lock_file, store_lock
from autoscope.slides.registry import load_registry

PY = sys.executable
HOLD = (
    "import sys, time; from autoscope.locks import store_lock\n"
    "with store_lock(sys.argv[1], 'the test store'):\n"
    "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
)


def holder_process(store: Path, seconds: float) -> subprocess.Popen:
    """A real process holding the store's lock for `seconds` (returned once it holds it)."""
    p = subprocess.Popen(
        [PY, "-c", HOLD, str(store), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_a_held_lock_names_its_holder_then_times_out(tmp_path: Path) -> None:
    store = tmp_path / "registry.parquet"
    p = holder_process(store, 30)
    try:
        lines: list[str] = []
        t0 = time.monotonic()
        with (
            pytest.raises(UserError) as e,
            store_lock(store, "the test store", 1.5, say=lines.append),
        ):
            pass
        assert time.monotonic() - t0 >= 1.5
        assert f"held by pid {p.pid} on host" in str(e.value) and "\n" not in str(e.value)
        assert lines == [
            f"waiting for the test store (held by pid {p.pid} on host {os.uname()[1]})"
        ]
    finally:
        p.kill()
        p.wait()


def test_waiters_get_the_lock_when_the_holder_ends_or_is_killed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    p = holder_process(store, 2)
    t0 = time.monotonic()
    lines: list[str] = []
    with store_lock(store, "the store", 30, say=lines.append) as path:
        assert time.monotonic() - t0 > 1.0 and len(lines) == 1
        assert path == lock_file(store) and path.read_text().split()[0] == str(os.getpid())
    p.wait()
    p = holder_process(store, 60)
    os.kill(p.pid, signal.SIGKILL)  # the kernel frees a dead holder's lock: never stale
    p.wait()
    with store_lock(store, "the store", 5):
        pass


def test_threads_take_turns_and_one_thread_may_nest(tmp_path: Path) -> None:
    store, counter = tmp_path / "n.txt", tmp_path / "n.txt"
    counter.write_text("0")

    def bump() -> None:
        for _ in range(20):
            with store_lock(store, "n", 30), store_lock(store, "n (nested)", 1):
                n = int(counter.read_text())
                time.sleep(0.001)
                counter.write_text(str(n + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.read_text() == "80"


def test_lock_files_of_a_workspace_are_named_by_relative_path(tmp_path: Path) -> None:
    ws, state = tmp_path / "ws", tmp_path / "ws" / "outputs" / "_state" / "locks"
    got = lock_file(ws / "data" / "p" / "slides" / "registry.parquet", state, ws)
    assert got == state / "data%p%slides%registry.parquet.lock"
    assert lock_file(tmp_path / "x" / "models") == tmp_path / "x" / ".models.lock"


def test_concurrent_ingests_of_different_folders_keep_every_row(tmp_path: Path) -> None:
    n, per = 4, 3
    for i in range(n):
        subprocess.run(
            [PY, "-m", "autoscope.slides.synth", str(tmp_path / f"s{i}"), "--count", str(per)]
            + ["--seed", str(10 * (i + 1)), "--width-px", "1536", "--height-px", "1024"],
            check=True,
            capture_output=True,
        )
    ws = tmp_path / "ws"
    base = ["demo", "project.name=conc", "slides.metadata=null", f"paths.workspace={ws}"]
    base.append("slides.checkpoint_s=0")  # save after every slide: the most contention
    procs = [
        subprocess.Popen(
            [
                PY,
                "-m",
                "autoscope.cli",
                "slides",
                "ingest",
                *base,
                f"slides.sources=[{tmp_path / f's{i}'}]",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    reg = load_registry(ws / "data" / "conc")
    assert len(reg) == n * per and reg["slide_id"].is_unique and set(reg["status"]) == {"ok"}
    assert not list((ws / "data").rglob("*.tmp-*"))
    assert (
        ws / "outputs" / "_state" / "locks" / "data%conc%slides%registry.parquet.lock"
    ).is_file()


def test_a_lock_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(
        UserError, match=r"^cannot lock the registry: .*\.x\.lock: .*file is not a folder$"
    ):
        with store_lock(tmp_path / "file" / "x", "the registry"):
            pass
