"""Parallel reading yields the reader's patches, in input order, and shuts down cleanly."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autoscope.errors import UserError
from autoscope.slides import parallel
from autoscope.slides.parallel import iter_batches
from autoscope.slides.reader import open_reader
from autoscope.slides.samplers import grid
from autoscope.slides.synth import make_synthetic_slide


@pytest.fixture
def made_shm(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the shared-memory segments iter_batches creates in this test."""
    names: list[str] = []

    class Recording(parallel.SharedMemory):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            names.append(self.name)

    monkeypatch.setattr(parallel, "SharedMemory", Recording)
    return names


def leaked(names: list[str]) -> list[str]:
    """The segments still present in /dev/shm (Linux)."""
    return [n for n in names if os.path.exists(f"/dev/shm/{n.lstrip('/')}")]


@pytest.fixture(scope="module")
def coords(synth_slide) -> np.ndarray:
    c = grid(synth_slide.width_px, synth_slide.height_px, 224, 200)
    rng = np.random.default_rng(0)
    return c[rng.permutation(len(c))[:70]]  # any order: the output must keep it


def expected(path: Path, coords: np.ndarray, mpp: float, patch_px: int) -> np.ndarray:
    with open_reader(path) as reader:
        return np.stack([reader.read_patch(x, y, mpp, patch_px) for x, y in coords])


@pytest.mark.parametrize(
    ("workers", "transport", "mpp"),
    [(0, "shm", 0.5), (2, "shm", 0.5), (1, "pickle", 0.5), (2, "shm", 0.75)],
)
def test_batches_in_order(
    synth_slide, coords, made_shm, workers: int, transport: str, mpp: float
) -> None:
    batches = list(
        iter_batches(
            str(synth_slide.path),
            coords,
            mpp,
            96,
            batch_size=16,
            workers=workers,
            queue_depth=3,
            transport=transport,
        )
    )
    assert [len(b) for b, _ in batches] == [16, 16, 16, 16, 6]
    for patches, c in batches:
        assert patches.dtype == np.uint8 and patches.shape[1:] == (96, 96, 3)
        assert c.dtype == np.int64 and c.shape == (len(patches), 2)
    got = np.concatenate([b for b, _ in batches])
    assert (np.concatenate([c for _, c in batches]) == coords).all()
    assert (got == expected(synth_slide.path, coords, mpp, 96)).all()
    assert not mp.active_children()
    assert not leaked(made_shm), "the shared-memory ring must be unlinked"


def test_early_break_cleans_up(synth_slide, coords, made_shm) -> None:
    it = iter_batches(
        str(synth_slide.path), coords, 0.5, 64, batch_size=4, workers=2, queue_depth=2
    )
    first, c = next(it)
    it.close()  # what a `break` in a for loop does
    assert first.shape == (4, 64, 64, 3) and (c == coords[:4]).all()
    assert not mp.active_children()
    assert made_shm and not leaked(made_shm)


def test_empty_and_bad_inputs(tmp_path: Path, synth_slide) -> None:
    empty = np.zeros((0, 2), np.int64)
    assert list(iter_batches(str(synth_slide.path), empty, 0.5, 64, 8, 2, 2)) == []
    with pytest.raises(UserError, match="not found"):
        list(iter_batches(str(tmp_path / "nope.tif"), [[0, 0]], 0.5, 64, 8, 0, 2))
    with pytest.raises(UserError, match="not found"):
        list(iter_batches(str(tmp_path / "nope.tif"), [[0, 0]], 0.5, 64, 8, 2, 2))
    nompp = make_synthetic_slide(
        tmp_path / "n.tif", seed=2, width_px=600, height_px=400, with_mpp=False
    )
    with pytest.raises(UserError, match="no mpp"):
        list(iter_batches(str(nompp.path), [[0, 0], [64, 0]], 0.5, 64, 1, 2, 2))
    assert not mp.active_children()
    got = list(iter_batches(str(nompp.path), [[0, 0]], 0.5, 64, 8, 1, 2, mpp_x=0.5))
    assert got[0][0].shape == (1, 64, 64, 3)
    with pytest.raises(UserError):
        list(iter_batches(str(synth_slide.path), [[0, 0]], 0.5, 64, 0, 1, 2))


def test_workers_do_not_rerun_the_main_script(tmp_path: Path, synth_slide) -> None:
    """A training script's top level (torch imports...) must not run again in every worker."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "train_like.py"
    script.write_text(
        "from autoscope.slides.parallel import iter_batches\n"
        f"open({str(marker)!r}, 'a').write('ran\\n')\n"
        "if __name__ == '__main__':\n"
        f"    batches = list(iter_batches({str(synth_slide.path)!r}, [[0, 0], [256, 0]], 0.5, 64,"
        " 1, 2, 2))\n"
        "    assert len(batches) == 2\n"
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    assert marker.read_text() == "ran\n"


def test_workers_exit_when_the_parent_is_killed(tmp_path: Path, synth_slide) -> None:
    """No orphan readers: workers notice a SIGKILLed parent and exit."""
    pids = tmp_path / "pids.txt"
    script = tmp_path / "killed.py"
    script.write_text(
        "import multiprocessing as mp, os, signal\n"
        "from autoscope.slides.parallel import iter_batches\n"
        "if __name__ == '__main__':\n"
        f"    it = iter_batches({str(synth_slide.path)!r}, [[0, 0]] * 40, 0.5, 64, 1, 2, 2)\n"
        "    next(it)\n"
        f"    open({str(pids)!r}, 'w').write(' '.join(str(p.pid) for p in mp.active_children()))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], timeout=120, capture_output=True)
    assert proc.returncode == -9
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(alive(p) for p in workers)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")
