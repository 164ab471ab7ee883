"""Scale-out: shards of one slide list, idempotent reruns, claims keep overlapping jobs apart."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from infer_helpers import archive_model

from autoscope.errors import UserError
from autoscope.infer import claim
from autoscope.infer.runner import SlideJob, shard_jobs


def _cfg(workspace: Path, *overrides: str):
    from autoscope.config import compose

    return compose("demo", [f"paths.workspace={workspace}", *overrides], stage="infer")


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory):
    """An archived model and five small synthetic slides listed in a file."""
    from autoscope.slides.synth import make_synthetic_slide

    ws = tmp_path_factory.mktemp("ws")
    archive_model(ws / "outputs" / "demo" / "models", mpp=2.0, patch_px=32)
    names = [f"s{i}" for i in range(5)]
    for i, n in enumerate(names):
        make_synthetic_slide(ws / "slides" / f"{n}.tif", seed=i, width_px=768, height_px=512)
    listing = ws / "slides.txt"
    listing.write_text("".join(f"{ws / 'slides' / n}.tif\n" for n in reversed(names)))
    return ws, listing, names


def _out(ws: Path) -> Path:
    return ws / "outputs" / "demo" / "infer" / "tissue_classification" / "v1"


def test_shards_split_the_sorted_list_exactly_once():
    jobs = [SlideJob(f"/x/{n}.tif", n) for n in "edcbagf"]
    parts = [shard_jobs(jobs, k, 3) for k in range(3)]
    names = [j.name for p in parts for j in p]
    assert sorted(names) == sorted("abcdefg") and len(names) == len(set(names))
    assert [j.name for j in parts[0]] == ["a", "d", "g"]  # sorted, dealt round-robin
    assert shard_jobs(list(reversed(jobs)), 1, 3) == parts[1]  # input order does not matter
    for bad in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(UserError, match=r"infer\.shard") as e:
            shard_jobs(jobs, *bad)
        assert "\n" not in str(e.value)


def test_two_shards_cover_every_slide_once_and_reruns_skip(demo_like):
    from autoscope.stages.infer import run

    ws, listing, names = demo_like
    common = [f"infer.slides={listing}", "infer.progress=false", "infer.shards=2"]
    first = run(_cfg(ws, *common, "infer.shard=0"))
    second = run(_cfg(ws, *common, "infer.shard=1"))
    assert first["done"] + second["done"] == len(names) and first["done"] == 3
    summaries = {p.parent.name: json.loads(p.read_text()) for p in _out(ws).glob("*/summary.json")}
    assert sorted(summaries) == names
    stamps = {p: p.stat().st_mtime_ns for p in _out(ws).glob("*/summary.json")}
    for k in (0, 1):
        again = run(_cfg(ws, *common, f"infer.shard={k}"))
        assert again["done"] == 0 and again["skipped"] == (3 if k == 0 else 2)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with pytest.raises(UserError, match="infer.shard=2 is out of range"):
        run(_cfg(ws, *common, "infer.shard=2"))


def test_a_slide_claimed_by_a_live_job_is_left_alone(demo_like, tmp_path):
    from autoscope.stages.infer import run

    ws, _, names = demo_like
    root = tmp_path / "out"
    out = root / "tissue_classification" / "v1"
    busy, stale = out / names[0], out / names[1]
    out.mkdir(parents=True)
    host = socket.gethostname()
    claim.lock_path(busy).write_text(f"{host} {os.getppid()}")  # a live process holds it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim.lock_path(stale).write_text(f"{host} {dead.pid}")  # its owner died
    listing = tmp_path / "two.txt"
    listing.write_text(f"{ws / 'slides' / names[0]}.tif\n{ws / 'slides' / names[1]}.tif\n")
    result = run(
        _cfg(ws, f"infer.slides={listing}", f"infer.out_root={root}", "infer.progress=false")
    )
    assert result["busy"] == 1 and result["done"] == 1
    assert not busy.exists() and claim.lock_path(busy).is_file()  # not written, claim kept
    assert (stale / "summary.json").is_file() and not claim.lock_path(stale).exists()


def _race(slide_dir: str, barrier, wins, done) -> None:
    barrier.wait()
    if claim.try_claim(Path(slide_dir)):
        wins.put(os.getpid())
    done.wait()  # the winner stays alive until every job has tried (a dead owner's claim is stale)


def test_racing_jobs_claim_a_slide_once(tmp_path):
    ctx = mp.get_context("fork")
    for content in (None, "nohost 1"):  # a free slide, then a stale foreign-looking claim
        slide = tmp_path / f"slide-{content is None}"
        if content:
            claim.lock_path(slide).write_text(content)
        barrier, done, wins = ctx.Barrier(4), ctx.Barrier(4), ctx.Queue()
        args = (str(slide), barrier, wins, done)
        procs = [ctx.Process(target=_race, args=args) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        won = []
        while not wins.empty():
            won.append(wins.get())
        assert len(won) == (1 if content is None else 0)


def test_shards_through_the_joblib_launcher(demo_like, tmp_path, monkeypatch):
    """`autoscope infer demo -m infer.shards=2 infer.shard=0,1 hydra/launcher=joblib`."""
    from autoscope.stages.app import run_app

    ws, listing, names = demo_like
    monkeypatch.chdir(tmp_path)  # the jobs' .hydra records land in this workspace's outputs
    out = tmp_path / "out"
    args = [
        "-m", f"paths.workspace={ws}", f"infer.slides={listing}", f"infer.out_root={out}",
        "infer.shards=2", "infer.shard=0,1", "infer.progress=false", "infer.workers=1",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/sweep",
    ]  # fmt: skip
    assert run_app("infer", "autoscope.stages.infer:run", "demo", args, "autoscope infer") == 0
    done = sorted(p.parent.name for p in out.glob("*/*/*/summary.json"))
    assert done == sorted(names)  # every slide once, each in one of the two worker processes
    assert len(list((tmp_path / "sweep").glob("*/.hydra/overrides.yaml"))) == 2
