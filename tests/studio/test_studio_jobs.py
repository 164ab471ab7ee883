"""The Studio's job queue: real CLI runs, one queue, cancel, and a history that survives."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from autoscope.studio.jobs import Job, JobQueue

SLEEPER = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]


def _wait(q: JobQueue, job_id: str, timeout_s: float = 60.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = q.get(job_id)
        if job.status not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {q.get(job_id).status}")


def test_jobs_run_the_real_cli(tmp_path: Path):
    q = JobQueue(tmp_path / "jobs", tmp_path, max_jobs=2)
    ok = q.submit(["--help"])
    bad = q.submit(["nostage", "demo"])
    assert _wait(q, ok.id).status == "done" and q.get(ok.id).exit_code == 0
    assert "usage: autoscope" in q.tail(ok.id)
    assert _wait(q, bad.id).status == "failed" and q.get(bad.id).exit_code == 2
    assert "unknown stage 'nostage'" in q.tail(bad.id)
    record = json.loads((tmp_path / "jobs" / f"{ok.id}.json").read_text())
    assert record["command"] == "autoscope --help" and record["status"] == "done"
    assert record["started"] <= record["ended"]


def test_one_queue_and_cancel(tmp_path: Path):
    q = JobQueue(tmp_path / "jobs", tmp_path, max_jobs=1, command=SLEEPER)
    first, second = q.submit(["a"]), q.submit(["b"])
    assert q.get(first.id).status == "running" and q.get(second.id).status == "queued"
    pid = q.get(first.id).pid
    q.cancel(first.id)
    assert _wait(q, first.id).status == "cancelled"
    from autoscope.procs import start_time

    assert start_time(pid) is None  # its process group is gone
    deadline = time.monotonic() + 10
    while q.get(second.id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q.get(second.id).status == "running"
    q.shutdown()
    assert q.get(second.id).status == "interrupted"


def test_history_survives_a_restart(tmp_path: Path):
    folder = tmp_path / "jobs"
    q = JobQueue(folder, tmp_path, command=SLEEPER)
    job = q.submit(["train", "demo"])
    q.shutdown()  # the Studio stops: its running job ends interrupted
    done = Job(id="old-done", words=["x"], status="running", pid=2**22 + 7, pid_start=1.0)
    (folder / "old-done.json").write_text(json.dumps(done.to_json()))
    (folder / "old-done.rc").write_text("0\n")  # the job finished while the Studio was down
    dead = Job(id="old-dead", words=["y"], status="running", pid=2**22 + 9, pid_start=1.0)
    (folder / "old-dead.json").write_text(json.dumps(dead.to_json()))
    again = JobQueue(folder, tmp_path, command=SLEEPER)
    assert again.get(job.id).status == "interrupted"
    assert again.get("old-done").status == "done" and again.get("old-done").exit_code == 0
    assert again.get("old-dead").status == "interrupted"
    rerun = again.submit(again.get(job.id).words)
    assert rerun.words == ["train", "demo"] and again.get(rerun.id).status == "running"
    again.shutdown()
