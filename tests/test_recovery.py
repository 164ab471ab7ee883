"""Crash debris is recognised by its owner and swept; concurrent archives get distinct versions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from autoscope import atomic
from autoscope.infer import claim
from autoscope.procs import start_time

PY = sys.executable
ARCHIVE_TESTS = Path(__file__).parent / "archive"


def dead_process() -> tuple[int, float]:
    """The pid and start time of a real process that has ended."""
    p = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
    started = start_time(p.pid)
    p.kill()
    p.wait()
    assert started is not None and start_time(p.pid) is None
    return p.pid, started


def test_sweep_removes_only_temporaries_whose_owner_is_gone(tmp_path: Path) -> None:
    pid, started = dead_process()
    me, here = os.getpid(), atomic.host_tag()
    dead = f"{pid}-{round(started * 100)}-{here}"
    reused = f"{me}-{round((start_time(me) - 3600) * 100)}-{here}"  # my pid, older owner
    gone = [f".a.tmp-{dead}", f".b.parquet.tmp-{dead}.x1y2", f".c.tmp-{reused}", f".d.tmp-{pid}"]
    kept = [
        f".e.tmp-{atomic.owner_tag()}",  # mine: a live writer
        f".f.tmp-{pid}-{round(started * 100)}-{atomic.host_tag('elsewhere')}",  # another host's
        f".g.tmp-{me}",  # an old-style name of a live pid
        "h.tmp-1",  # not hidden: not ours
        ".i.lock",
        "registry.parquet",
    ]
    for name in gone + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / f".dir.tmp-{dead}").mkdir()
    (tmp_path / f".dir.tmp-{dead}" / "shard.npy").write_text("x")
    lines: list[str] = []
    removed = atomic.sweep_stale(tmp_path, say=lines.append)
    assert sorted(p.name for p in removed) == sorted([*gone, f".dir.tmp-{dead}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert f"removed stale temp .a.tmp-{dead} of dead pid {pid}" in lines and len(lines) == 5
    assert atomic.sweep_stale(tmp_path / "missing") == []


def test_a_killed_writer_leaves_debris_that_the_next_run_removes(tmp_path: Path) -> None:
    code = (
        "import sys, time; from autoscope.atomic import atomic_dir, write_text\n"
        "with atomic_dir(sys.argv[1]) as tmp:\n"
        "    write_text(tmp / 'part.txt', 'half'); print(tmp.name, flush=True); time.sleep(60)\n"
    )
    final = tmp_path / "datasets" / "tiny"
    p = subprocess.Popen([PY, "-c", code, str(final)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    name = p.stdout.readline().strip()
    assert name.startswith(f".tiny.tmp-{p.pid}-") and (final.parent / name).is_dir()
    assert atomic.sweep_stale(final.parent) == []  # its owner is alive: kept
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    lines: list[str] = []
    assert atomic.sweep_stale(final.parent, say=lines.append) == [final.parent / name]
    assert lines == [f"removed stale temp {name} of dead pid {p.pid}"]
    assert list(final.parent.iterdir()) == []


def test_a_claim_of_a_reused_pid_is_stale(tmp_path: Path) -> None:
    slide = tmp_path / "v1" / "slide_000"
    assert claim.try_claim(slide) and not claim.try_claim(slide)  # mine, alive
    host, pid, started = claim.lock_path(slide).read_text().split()
    claim.lock_path(slide).write_text(f"{host} {pid} {int(started) - 360000}")  # an older owner
    assert claim.try_claim(slide)
    assert claim.lock_path(slide).read_text().split()[2] == started
    claim.release(slide)
    assert not claim.lock_path(slide).exists()


def test_two_concurrent_archives_of_different_runs_get_two_versions(tmp_path: Path) -> None:
    sys.path.insert(0, str(ARCHIVE_TESTS))
    try:
        from fakes import compose_cfg, fake_run
    finally:
        sys.path.remove(str(ARCHIVE_TESTS))
    cfg = compose_cfg(tmp_path)
    runs = [fake_run(cfg, val_acc=0.8, seed=1), fake_run(cfg, val_acc=0.7, seed=2)]
    models = tmp_path / "outputs" / "demo" / "models" / "tissue_classification"
    (models).mkdir(parents=True)
    dead = f"{dead_process()[0]}-1-{atomic.host_tag()}"
    (models / f".v9.tmp-{dead}").mkdir()  # a killed archive's debris
    t0 = time.monotonic()
    hold = (
        "import sys, time; from pathlib import Path; from autoscope.locks import store_lock\n"
        "with store_lock(sys.argv[1], 'x', lock_dir=sys.argv[2], root=Path(sys.argv[3])):\n"
        "    print('held', flush=True)\n"
        "    while not Path(sys.argv[4]).exists(): time.sleep(0.05)\n"
    )
    locks, go = tmp_path / "outputs" / "_state" / "locks", tmp_path / "go"
    holder = subprocess.Popen(
        [PY, "-c", hold, str(models), str(locks), str(tmp_path), str(go)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    logs = [tmp_path / f"archive{i}.log" for i in range(2)]
    procs = [
        subprocess.Popen(
            [PY, "-m", "autoscope.cli", "archive", "demo", f"paths.workspace={tmp_path}"]
            + [f"run={rid}", "archive.review_slide=null"],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for rid, log in zip(runs, logs, strict=True)
    ]
    want = f"waiting for the model store of demo-tissue_classification (held by pid {holder.pid}"
    while not all(want in log.read_text() for log in logs):  # both wait at the version step
        assert time.monotonic() - t0 < 240 and all(p.poll() is None for p in procs)
        time.sleep(0.2)
    go.touch()  # both archives now race for the next version
    holder.wait(timeout=30)
    for p in procs:
        p.wait(timeout=240)
    outs = [log.read_text() for log in logs]
    assert all(p.returncode == 0 for p in procs), outs
    from autoscope.archive.card import read_card

    cards = {read_card(models / v).run_id: read_card(models / v).version for v in ("v1", "v2")}
    assert set(cards) == set(runs) and sorted(cards.values()) == [1, 2]
    assert sorted(p.name for p in models.iterdir()) == ["v1", "v2"]
    assert sum("removed stale temp .v9.tmp-" in o for o in outs) == 1
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=str(cfg.paths.mlflow_uri))
    found = client.search_model_versions("name='demo-tissue_classification'")
    assert sorted((int(v.version), v.run_id) for v in found) == sorted(
        (v, r) for r, v in cards.items()
    )
    assert time.monotonic() - t0 < 300


def test_infer_sweeps_a_killed_jobs_slide_folder_then_writes_the_slide(
    tmp_path: Path, capsys
) -> None:
    sys.path.insert(0, str(Path(__file__).parent / "infer"))
    try:
        from infer_helpers import archive_model
    finally:
        sys.path.remove(str(Path(__file__).parent / "infer"))
    from autoscope.config import compose
    from autoscope.slides.synth import make_synthetic_slide
    from autoscope.stages.infer import run

    archive_model(tmp_path / "outputs" / "demo" / "models", mpp=2.0, patch_px=32)
    slide = make_synthetic_slide(tmp_path / "slides" / "s0.tif", width_px=768, height_px=512)
    out = tmp_path / "outputs" / "demo" / "infer" / "tissue_classification" / "v1"
    pid, started = dead_process()
    junk = out / f".s0.tmp-{pid}-{round(started * 100)}-{atomic.host_tag()}"
    (junk / "tiles.parquet").parent.mkdir(parents=True)
    (junk / "tiles.parquet").write_text("half")
    cfg = compose(
        "demo",
        [f"paths.workspace={tmp_path}", f"infer.slides={slide.path}", "infer.progress=false"],
        stage="infer",
    )
    assert run(cfg)["done"] == 1
    assert f"removed stale temp {junk.name} of dead pid {pid}" in capsys.readouterr().out
    assert (
        sorted(p.name for p in out.iterdir()) == ["s0"] and (out / "s0" / "summary.json").is_file()
    )
