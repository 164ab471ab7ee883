"""The atomic-write rule publishes files and folders with the umask's modes, never 0600/0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscope import atomic


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a given process umask, restoring the old one after."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_current_umask_reads_without_changing(umask: int) -> None:
    assert atomic.current_umask() == umask
    assert atomic.current_umask() == umask
    assert atomic.file_mode() == 0o666 & ~umask and atomic.dir_mode() == 0o777 & ~umask


def test_files_get_the_umask_mode(umask: int, tmp_path: Path) -> None:
    want = {0o022: 0o644, 0o002: 0o664}[umask]
    written = [
        atomic.write_text(tmp_path / "new" / "a.txt", "a"),
        atomic.write_bytes(tmp_path / "b.bin", b"b"),
        atomic.write_json(tmp_path / "c.json", {"c": 1}),
    ]
    with atomic.atomic_file(tmp_path / "d.dat") as tmp:
        tmp.write_bytes(b"d")
    written.append(tmp_path / "d.dat")
    for p in written:
        assert mode(p) == want, p
    assert mode(tmp_path / "new") == {0o022: 0o755, 0o002: 0o775}[umask]
    atomic.write_text(tmp_path / "a2.txt", "x")  # replacing keeps the rule
    atomic.write_text(tmp_path / "a2.txt", "y")
    assert mode(tmp_path / "a2.txt") == want
    assert not [p for p in tmp_path.rglob("*") if atomic.TMP_MARK in p.name]


def test_folders_get_the_umask_mode(umask: int, tmp_path: Path) -> None:
    want_dir = {0o022: 0o755, 0o002: 0o775}[umask]
    want_file = {0o022: 0o644, 0o002: 0o664}[umask]
    for _ in range(2):  # a new folder, then one replacing an older version
        with atomic.atomic_dir(tmp_path / "out" / "slide") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "f.txt").write_text("f")
            atomic.write_text(tmp / "g.txt", "g")
    final = tmp_path / "out" / "slide"
    assert mode(final) == mode(final / "sub") == mode(tmp_path / "out") == want_dir
    assert mode(final / "sub" / "f.txt") == mode(final / "g.txt") == want_file
    with atomic.scratch_dir(tmp_path, "review") as scratch:
        assert mode(scratch) == want_dir and atomic.TMP_MARK in scratch.name
    assert not scratch.exists()
    assert not [p for p in tmp_path.rglob("*") if atomic.TMP_MARK in p.name]


def test_failed_writes_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic.atomic_file(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    with pytest.raises(RuntimeError), atomic.atomic_dir(tmp_path / "d") as tmp:
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
