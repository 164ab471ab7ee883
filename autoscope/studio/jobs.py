"""The Studio's job queue: real CLI runs in the background, recorded as JSON files.

A job is the words of one `autoscope` command (`["train", "demo", "model=tiny_cnn"]`). It runs
as `autoscope.studio.child` (the CLI itself) in its own process group, its output in a log file.
Records (`<id>.json`: command, status, log, start/end, exit code, owner pid) are written
atomically under `outputs/<project>/studio/jobs/`, so the history survives a restart: a job that
was running when the Studio died is shown `interrupted` (re-run it: the stages resume).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoscope.atomic import write_json
from autoscope.procs import START_TOLERANCE_S, start_time, stop_group

ENDED = ("done", "failed", "cancelled", "interrupted")
POLL_S = 1.0  # how often a job left running by an earlier Studio is looked at


@dataclass
class Job:
    """One job record (what `<id>.json` holds)."""

    id: str
    words: list[str]
    label: str = ""
    status: str = "queued"  # queued | running | done | failed | cancelled | interrupted
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    pid_start: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as plain data, with the command line as a user would type it."""
        d = asdict(self)
        d["command"] = "autoscope " + " ".join(self.words)
        return d


class JobQueue:
    """One FIFO queue, at most `max_jobs` running.

    Args:
        folder: where records and logs live.
        cwd: the workspace the jobs run in.
        max_jobs: jobs running at once.
        command: argv prefix of a job process (default: `python -m autoscope.studio.child`);
            it is given `<rc_file> <studio_pid> <words...>`.
    """

    def __init__(
        self, folder: Path, cwd: Path, max_jobs: int = 1, command: list[str] | None = None
    ) -> None:
        self.folder = Path(folder)
        self.cwd = Path(cwd)
        self.max_jobs = max(1, int(max_jobs))
        self.command = command or [sys.executable, "-m", "autoscope.studio.child"]
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancel: set[str] = set()
        self._closed = False
        self._recover()
        self._pump()

    def _path(self, job_id: str, ext: str) -> Path:
        return self.folder / f"{job_id}.{ext}"

    def log_path(self, job_id: str) -> Path:
        """The job's log file."""
        return self._path(job_id, "log")

    def _save(self, job: Job) -> None:
        write_json(self._path(job.id, "json"), job.to_json())

    def _exit_code(self, job: Job) -> int | None:
        rc = self._path(job.id, "rc")
        try:
            return int(rc.read_text().strip())
        except (OSError, ValueError):
            return None

    def _recover(self) -> None:
        """Load the records; a running job whose process is gone ends now (exit code or not)."""
        if not self.folder.is_dir():
            return
        for p in self.folder.glob("*.json"):
            try:
                d = json.loads(p.read_text())
                job = Job(**{k: d[k] for k in Job.__dataclass_fields__ if k in d})
            except (OSError, ValueError, TypeError, KeyError):
                continue
            self._jobs[job.id] = job
            if job.status != "running":
                continue
            started = start_time(job.pid) if job.pid else None
            alive = started is not None and abs(started - (job.pid_start or 0)) <= START_TOLERANCE_S
            if alive:  # an earlier Studio's job still runs: watch it until it ends
                threading.Thread(target=self._watch_pid, args=(job,), daemon=True).start()
            else:
                self._finish(job, self._exit_code(job))

    def _finish(self, job: Job, rc: int | None) -> None:
        """End a job: cancelled, interrupted (no exit code), done (0) or failed."""
        with self._lock:
            if job.status in ENDED:  # already ended (shutdown, then its waiter)
                return
            job.ended = time.time()
            job.exit_code = rc
            if job.id in self._cancel:
                job.status = "cancelled"
            elif rc is None:
                job.status = "interrupted"
            else:
                job.status = "done" if rc == 0 else "failed"
            self._procs.pop(job.id, None)
            self._save(job)

    def _watch_pid(self, job: Job) -> None:
        while start_time(int(job.pid or 0)) is not None:
            time.sleep(POLL_S)
        self._finish(job, self._exit_code(job))
        self._pump()

    def submit(self, words: list[str], label: str = "") -> Job:
        """Queue a CLI command (its words after `autoscope`); it starts when a slot is free."""
        job = Job(id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], words=list(words))
        job.label = label or " ".join(words[:2])
        with self._lock:
            self._jobs[job.id] = job
            self._save(job)
        self._pump()
        return job

    def _pump(self) -> None:
        with self._lock:
            if self._closed:
                return
            running = sum(j.status == "running" for j in self._jobs.values())
            queued = sorted(
                (j for j in self._jobs.values() if j.status == "queued"), key=lambda j: j.created
            )
            for job in queued[: max(0, self.max_jobs - running)]:
                self._start(job)

    def _start(self, job: Job) -> None:
        rc_file = self._path(job.id, "rc")
        rc_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path(job.id), "ab") as log:
            log.write(f"$ autoscope {' '.join(job.words)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [*self.command, str(rc_file), str(os.getpid()), *job.words],
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: cancel stops all of it
                env=env,
            )
        job.status, job.started, job.pid = "running", time.time(), proc.pid
        job.pid_start = start_time(proc.pid)
        self._procs[job.id] = proc
        self._save(job)
        threading.Thread(target=self._wait, args=(job, proc), daemon=True).start()

    def _wait(self, job: Job, proc: subprocess.Popen) -> None:
        proc.wait()
        rc = self._exit_code(job)
        if rc is None and proc.returncode >= 0:
            rc = proc.returncode
        self._finish(job, rc)
        self._pump()

    def get(self, job_id: str) -> Job | None:
        """One job's record (None: unknown id)."""
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        """Every job, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job, or stop a running one's process group."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in ENDED:
                return job
            self._cancel.add(job_id)
            if job.status == "queued":
                self._finish(job, None)
                return job
            proc = self._procs.get(job_id)
        if proc is not None:
            stop_group(proc, timeout_s=5.0)
        elif job.pid:  # a job of an earlier Studio: its group id is its pid
            try:
                os.killpg(job.pid, 15)
            except ProcessLookupError:
                pass
        return job

    def tail(self, job_id: str, lines: int = 200) -> str:
        """The last `lines` lines of a job's log (progress bars: their latest state)."""
        p = self.log_path(job_id)
        if not p.is_file():
            return ""
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
        rows = [ln.rsplit("\r", 1)[-1] for ln in text.replace("\r\n", "\n").split("\n")]
        return "\n".join(rows[-lines:])

    def shutdown(self) -> None:
        """Stop every running job (they end `interrupted`) and start no more."""
        with self._lock:
            self._closed = True
            procs = list(self._procs.items())
        for job_id, proc in procs:
            stop_group(proc, timeout_s=5.0)
            job = self._jobs[job_id]
            if job.status == "running":
                self._finish(job, None)
