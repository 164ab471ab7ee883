"""kill -9 of training, a sweep and inference at random points, then the next run: nothing lost.

Real processes, a real MLflow SQLite store and Optuna storage, a real SIGKILL. A killed run's
MLflow record ends KILLED (the next stage that touches the experiment reaps it) and is never
ranked with finished runs; a killed sweep resumes without duplicate or lost trials; a killed
inference leaves no process behind and its rerun gives the outputs of an uninterrupted run.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

TESTS = Path(__file__).parents[1]
sys.path.insert(0, str(TESTS / "models"))
sys.path.insert(0, str(TESTS / "infer"))
from infer_helpers import archive_model  # noqa: E402
from tinydata import TINY_TRAIN, make_tiny_dataset  # noqa: E402

from autoscope.models.tracking import OWNER_TAGS, owner_tags, reap_dead_runs  # noqa: E402
from autoscope.procs import still_running  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from autoscope.cli import main; sys.exit(main())"]
TINY = ["++dataset.name=tiny", *TINY_TRAIN, "trainer.max_minutes=null"]


def _start(ws: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _cli(ws: Path, *args: str, timeout: float = 600) -> str:
    done = subprocess.run([*CLI, *args], cwd=ws, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def _wait(pred: Callable[[], bool], proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait until `pred()` holds, while `proc` runs (it must not end first)."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"ended before the kill point: {proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, "kill point not reached in time"
        time.sleep(0.2)


def _kill9(proc: subprocess.Popen, rng: random.Random, max_delay_s: float) -> tuple[list, list]:
    """SIGKILL `proc` after a random delay.

    Returns:
        (the pids of its descendants at that moment, those still running 5 s later). Its output
        pipe stays open meanwhile: a worker writing to it sees no broken pipe.
    """
    time.sleep(rng.uniform(0, max_delay_s))
    kids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    alive = still_running(kids)
    proc.stdout.close()
    return kids, alive


def _client(ws: Path):
    import mlflow

    from autoscope.config import compose

    uri = compose("demo", [f"paths.workspace={ws}"]).paths.mlflow_uri
    return mlflow.MlflowClient(tracking_uri=str(uri))


def _runs(ws: Path) -> list:
    client = _client(ws)
    exp = client.get_experiment_by_name("demo")
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


# --- reaping, on a real MLflow store with owners of real (dead and live) processes -----------


def test_reap_marks_only_runs_of_dead_local_owners(tmp_path: Path) -> None:
    from autoscope.archive.select import experiment_id
    from autoscope.archive.tables import run_rows

    (tmp_path / "outputs" / "_state").mkdir(parents=True)
    client = _client(tmp_path)
    exp = client.create_experiment("demo")
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    live = owner_tags()
    dead = {**live, OWNER_TAGS[1]: done.stdout.decode().strip()}
    reused = {**live, OWNER_TAGS[2]: f"{float(live[OWNER_TAGS[2]]) - 3600:.3f}"}
    remote = {**dead, OWNER_TAGS[0]: socket.gethostname() + "-elsewhere"}
    runs = {}
    for name, tags in [("dead", dead), ("reused", reused), ("live", live), ("remote", remote),
                       ("old", {}), ("finished", live)]:  # fmt: skip
        runs[name] = client.create_run(exp, run_name=name, tags=tags).info.run_id
    client.log_metric(runs["dead"], "val/acc", 0.99)  # a partial curve, better than finished
    client.log_metric(runs["finished"], "kept/val/acc", 0.7)
    client.log_metric(runs["finished"], "val/acc", 0.7)
    client.set_terminated(runs["finished"], "FINISHED")

    lines: list[str] = []
    assert experiment_id(client, "demo", say=lines.append) == exp  # archive / runs export path
    assert len(lines) == 2 and all("marked KILLED" in ln for ln in lines)
    status = {n: client.get_run(r).info.status for n, r in runs.items()}
    assert status == {"dead": "KILLED", "reused": "KILLED", "live": "RUNNING",
                      "remote": "RUNNING", "old": "RUNNING", "finished": "FINISHED"}  # fmt: skip
    assert reap_dead_runs(client, exp, lines.append) == []  # once only

    rows, _ = run_rows(client, "demo", "val/acc", "max", "val/acc", 50)
    assert rows[0]["name"] == "finished"  # the killed run's 0.99 is not ranked
    assert {r["name"]: r["status"] for r in rows[1:]}["dead"] == "KILLED"


# --- a training killed with SIGKILL -----------------------------------------------------------


@pytest.mark.slow
def test_killed_training_ends_killed_and_is_not_ranked(tmp_path: Path) -> None:
    rng = random.Random(os.getpid())
    ws = tmp_path
    make_tiny_dataset(ws / "data" / "demo" / "datasets" / "tiny")
    ov = [f"paths.workspace={ws}", *TINY]
    _cli(ws, "train", "demo", *ov, "trainer.max_epochs=2")
    (finished,) = _runs(ws)
    assert finished.info.status == "FINISHED"

    proc = _start(ws, "train", "demo", *ov, "trainer.max_epochs=200", "trainer.patience=null")

    def curve_started() -> bool:
        return any(r.info.status == "RUNNING" and "val/acc" in r.data.metrics for r in _runs(ws))

    _wait(curve_started, proc, 300)
    assert _kill9(proc, rng, 2.0)[1] == []
    (killed,) = [r for r in _runs(ws) if r.info.run_id != finished.info.run_id]
    assert killed.info.status == "RUNNING"  # nobody marked it yet: the process had no chance
    assert killed.data.tags[OWNER_TAGS[1]] == str(proc.pid)

    out = _cli(ws, "runs", "list", "demo", f"paths.workspace={ws}", "--sort", "val/acc")
    assert f"run {killed.info.run_id}" in out and "marked KILLED" in out
    table = out[out.index("run_id") :].splitlines()
    assert table[1].startswith(finished.info.run_id)  # ranked first: the only finished run
    assert table[2].startswith(killed.info.run_id) and "KILLED" in table[2]
    assert _client(ws).get_run(killed.info.run_id).info.status == "KILLED"


# --- a sweep killed with SIGKILL mid-trial, then resumed --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib"]
)
def test_killed_sweep_resumes_without_lost_or_duplicate_trials(
    tmp_path: Path, launcher: list[str]
) -> None:
    import optuna

    from autoscope.config import compose

    rng = random.Random(os.getpid())
    ws = tmp_path
    make_tiny_dataset(ws / "data" / "demo" / "datasets" / "tiny")
    ov = [f"paths.workspace={ws}", "hpo=small", *TINY, "hpo.n_trials=2", "trainer.max_epochs=60"]
    ov += ["trainer.patience=null"]  # trials long enough to be killed mid-training
    cfg = compose("demo", ov)
    storage, name = str(cfg.paths.optuna_storage), str(cfg.hpo.study_name)

    def trials() -> list:
        if not Path(storage.removeprefix("sqlite:///")).is_file():
            return []
        try:
            return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - the study or its tables are not created yet
            return []

    def second_trial_running() -> bool:
        """Trial #1 or later is training: its run is RUNNING and logged an epoch."""
        ids = {t.user_attrs.get("run_id") for t in trials()
               if t.state.name == "RUNNING" and t.number >= 1}  # fmt: skip
        ids.discard(None)
        return bool(ids) and any(  # MLflow's store exists by now: never created from here
            r.info.run_id in ids and r.info.status == "RUNNING" and "val/acc" in r.data.metrics
            for r in _runs(ws)
        )

    proc = _start(ws, "train", "demo", "-m", *ov, *launcher)
    _wait(second_trial_running, proc, 400)
    _, alive = _kill9(proc, rng, 0.5)
    assert alive == []  # the trials' workers died with the sweep
    cut = {t.number: t for t in trials()}
    running = {r.info.run_id for r in _runs(ws) if r.info.status == "RUNNING"}
    victims = [t.user_attrs["run_id"] for t in cut.values()
               if t.state.name == "RUNNING" and "run_id" in t.user_attrs]  # fmt: skip
    left_running = [r for r in victims if r in running]  # killed mid-training
    assert left_running

    out = _cli(ws, "train", "demo", "-m", *ov, *launcher)
    assert all(f"run {r}" in out for r in left_running)
    assert ("marked KILLED" in out) == bool(left_running)
    final = trials()
    counted = [t for t in final if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 2  # every trial once: none lost, none run twice
    runs = [t.user_attrs["run_id"] for t in counted]
    assert len(set(runs)) == 2 and not set(victims) & set(runs)
    before = {n for n, t in cut.items() if t.state.name in ("COMPLETE", "PRUNED")}
    assert before <= {t.number for t in counted}  # finished trials were kept, not redone
    client = _client(ws)
    for r in victims:  # KILLED by the reaper (a worker that failed first: FAILED)
        want = ("KILLED",) if r in left_running else ("KILLED", "FAILED")
        assert client.get_run(r).info.status in want
    for t in counted:  # a pruned trial's run ends KILLED by its own hand
        want = "FINISHED" if t.state.name == "COMPLETE" else "KILLED"
        assert client.get_run(t.user_attrs["run_id"]).info.status == want
    table = _cli(ws, "runs", "list", "demo", f"paths.workspace={ws}", "--sort", "val/acc")
    rows = [ln.split() for ln in table[table.index("run_id") :].splitlines()[1:]]
    head = list(itertools.takewhile(lambda c: c[2] == "FINISHED" and c[3] != "-", rows))
    assert head and not set(victims) & {c[0] for c in head}  # ranked: finished runs only


# --- inference killed with SIGKILL, then rerun ------------------------------------------------


def _infer_ws(root: Path, synth_slide, copies: int) -> tuple[Path, list[str]]:
    archive_model(root / "outputs" / "demo" / "models", mpp=1.0, patch_px=32)
    slides = root / "slides"
    slides.mkdir(parents=True)
    for i in range(copies):
        shutil.copy(synth_slide.path, slides / f"s{i}.tif")
    ov = [f"paths.workspace={root}", f"infer.slides={slides}", "infer.progress=false"]
    return root, [*ov, "infer.instances=2", "infer.workers=1"]


@pytest.mark.slow
def test_killed_inference_leaves_no_process_and_reruns_to_the_same_outputs(
    tmp_path: Path, synth_slide
) -> None:
    import pandas as pd

    rng = random.Random(os.getpid())
    n = 6
    sub = Path("outputs/demo/infer/tissue_classification/v1")
    ref, ref_ov = _infer_ws(tmp_path / "ref", synth_slide, n)
    _cli(ref, "infer", "demo", *ref_ov)
    ws, ov = _infer_ws(tmp_path / "ws", synth_slide, n)
    out = ws / sub

    proc = _start(ws, "infer", "demo", *ov)
    _wait(lambda: any(out.glob("*/summary.json")), proc, 300)
    kids, alive = _kill9(proc, rng, 0.5)
    assert len(kids) >= 2  # the two instances (and their readers) were running
    assert alive == []  # all died with their parent
    done_before = {p.parent.name for p in out.glob("*/summary.json")}
    assert 0 < len(done_before) < n, "the kill came after every slide was done"

    text = _cli(ws, "infer", "demo", *ov)
    assert f"{len(done_before)} slide(s) already done" in text
    for i in range(n):
        got = pd.read_parquet(out / f"s{i}" / "tiles.parquet")
        want = pd.read_parquet(ref / sub / f"s{i}" / "tiles.parquet")
        pd.testing.assert_frame_equal(got, want)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        f"s{i}" for i in range(n)
    ]
    debris = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert debris == []  # the killed job's temporaries were swept (atomic.sweep_stale)
