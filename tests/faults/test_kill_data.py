"""kill -9 a real `slides ingest` and a real `dataset build` mid-run, rerun, compare.

After the rerun: no lost or duplicate registry rows, no temporary debris under the workspace's
data, and the same registry and dataset (manifest bytes, DVC-style version) as an uninterrupted
run. Kill points are random (seeded) delays after the first progress lines, plus one taken
while the dataset's temporary folder exists.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from autoscope.slides.registry import load_registry

PY = sys.executable
SLIDES = 8
SEED = 12  # the kill points are random but reproducible
HOLD = (  # holds a store's lock (argv: store, lock folder, workspace) until argv[4] exists
    "import sys, time; from pathlib import Path; from autoscope.locks import store_lock\n"
    "with store_lock(sys.argv[1], 'x', lock_dir=sys.argv[2], root=Path(sys.argv[3])):\n"
    "    print('held', flush=True)\n"
    "    while not Path(sys.argv[4]).exists(): time.sleep(0.05)\n"
)
KEEP = ["slide_id", "name", "status", "width_px", "height_px", "mpp_x", "tissue_fraction"]


def cli(ws: Path, raw: Path, *args: str) -> list[str]:
    return [
        PY,
        "-m",
        "autoscope.cli",
        *args,
        "demo",
        f"paths.workspace={ws}",
        "slides.metadata=null",
        f"slides.sources=[{raw}]",
    ]


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def debris(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "data").rglob("*") if ".tmp-" in p.name)


def kill_after(cmd: list[str], lines: int, until: str, delay_s: float, poll=None) -> str:
    """Start `cmd`, wait for `lines` lines containing `until` (then `poll()`), sleep, kill -9."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.stdout is not None
    seen, log = 0, []
    for line in p.stdout:
        log.append(line)
        seen += until in line
        if seen >= lines:
            break
    t0 = time.monotonic()
    while poll is not None and not poll(p.pid) and p.poll() is None:
        assert time.monotonic() - t0 < 60, "".join(log)
        time.sleep(0.01)
    time.sleep(delay_s)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode in (-signal.SIGKILL, 0), "".join(log)
    return "".join(log)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic slides (with GeoJSON regions) where the demo dataset looks for them."""
    root = tmp_path_factory.mktemp("raw")
    out = root / "synthetic"
    subprocess.run(
        [PY, "-m", "autoscope.slides.synth", str(out), "--count", str(SLIDES), "--seed", "3"]
        + ["--width-px", "1536", "--height-px", "1024"],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The registry of an uninterrupted ingest."""
    ws = tmp_path_factory.mktemp("clean")
    run(cli(ws, raw, "slides", "ingest"))
    return load_registry(ws / "data" / "demo")[KEEP].sort_values("slide_id", ignore_index=True)


def workspace(tmp_path: Path, raw: Path) -> tuple[Path, Path]:
    """A workspace whose demo dataset globs its own copy of the slides."""
    ws = tmp_path / "ws"
    mine = ws / "data" / "demo" / "raw" / "synthetic"
    mine.parent.mkdir(parents=True)
    os.symlink(raw, mine)
    return ws, mine


@pytest.mark.parametrize("after_lines", [1, 3, 5])
def test_killed_ingest_reruns_to_the_same_registry(
    after_lines: int, raw: Path, clean: pd.DataFrame, tmp_path: Path
) -> None:
    ws, src = workspace(tmp_path, raw)
    delay = random.Random(SEED + after_lines).uniform(0, 0.4)
    cmd = cli(ws, src, "slides", "ingest")
    # checkpoint by time only (every save after a slide), not by count
    cmd += ["slides.checkpoint_slides=1000", "slides.checkpoint_s=0"]
    kill_after(cmd, after_lines + 1, "slide_", delay)  # the first line names the registry only
    before = load_registry(ws / "data" / "demo")
    assert len(before) >= after_lines - 1 and before["slide_id"].is_unique
    out = run(cli(ws, src, "slides", "ingest"))
    skipped = [line for line in out.splitlines() if line.split()[:1] == ["unchanged"]]
    assert len(skipped) == len(before)  # registered slides are skipped, not redone
    reg = load_registry(ws / "data" / "demo")
    assert len(reg) == SLIDES and reg["slide_id"].is_unique
    got = reg[KEEP].sort_values("slide_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, clean, check_dtype=False)
    assert debris(ws) == []


def test_killed_dataset_build_reruns_to_the_same_dataset(raw: Path, tmp_path: Path) -> None:
    ws, src = workspace(tmp_path, raw)
    run(cli(ws, src, "slides", "ingest"))
    datasets = ws / "data" / "demo" / "datasets"
    build = [*cli(ws, src, "dataset", "build"), "dataset.max_patches_per_slide=200"]

    def temp_exists(pid: int) -> bool:
        return any(p.name.startswith(f".demo_tissue.tmp-{pid}-") for p in datasets.glob(".*"))

    kill_after(build, 1, "patches;", 0.0, poll=temp_exists)  # mid-write of the temp folder
    left = debris(ws)
    assert left and not (datasets / "demo_tissue").exists()
    rng = random.Random(SEED)
    logs = [kill_after(build, 1, "patches;", rng.uniform(0, 1.0)) for _ in range(2)]
    assert f"removed stale temp {left[0]} of dead pid" in logs[0]  # the next run sweeps it
    out = run(build)
    assert debris(ws) == []
    first = (datasets / "demo_tissue" / "manifest.parquet").read_bytes()
    version = re.findall(r"version=([0-9a-f]{32}\.dir)", out)
    again = run(build)  # an uninterrupted rebuild gives the same bytes and version
    assert (datasets / "demo_tissue" / "manifest.parquet").read_bytes() == first
    assert version and re.findall(r"version=([0-9a-f]{32}\.dir)", again) == version
    assert debris(ws) == []


def test_concurrent_builds_of_one_dataset_publish_one_whole_version(
    raw: Path, tmp_path: Path
) -> None:
    ws, src = workspace(tmp_path, raw)
    run(cli(ws, src, "slides", "ingest"))
    build = [*cli(ws, src, "dataset", "build"), "dataset.max_patches_per_slide=200"]
    folder = ws / "data" / "demo" / "datasets" / "demo_tissue"
    go, locks = tmp_path / "go", ws / "outputs" / "_state" / "locks"
    holder = subprocess.Popen(  # holds the dataset's lock until `go` exists
        [PY, "-c", HOLD, str(folder), str(locks), str(ws), str(go)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    logs = [tmp_path / f"build{i}.log" for i in range(3)]
    procs = [
        subprocess.Popen(build, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs
    ]
    t0, want = time.monotonic(), f"waiting for dataset demo_tissue (held by pid {holder.pid}"
    while not all(want in log.read_text() for log in logs):  # all three wait to publish
        assert time.monotonic() - t0 < 120 and all(p.poll() is None for p in procs)
        time.sleep(0.1)
    go.touch()
    holder.wait(timeout=30)
    for p in procs:
        p.wait(timeout=300)
    outs = [log.read_text() for log in logs]
    assert all(p.returncode == 0 for p in procs), outs
    versions = {v for o in outs for v in re.findall(r"version=([0-9a-f]{32}\.dir)", o)}
    manifest = pd.read_parquet(folder / "manifest.parquet")
    shards = {p.name for p in (folder / "shards").iterdir()}
    assert len(versions) == 1 and set(manifest["shard"].map(lambda s: Path(s).name)) <= shards
    assert debris(ws) == []
    again = run(build)  # one build alone: the same version
    assert re.findall(r"version=([0-9a-f]{32}\.dir)", again) == sorted(versions)
