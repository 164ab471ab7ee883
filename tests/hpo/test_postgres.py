"""Two sweepers on one machine share an Optuna study through a real PostgreSQL server.

Behind the `postgres` marker (`pytest -m postgres`): it needs PostgreSQL's server binaries
(Debian: `apt-get install postgresql`) and the psycopg2 driver (`.[dev]`). The server runs from a
temp folder on a free loopback port and is stopped afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.postgres


def _bin(name: str) -> str | None:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server; yields its URL (user `optuna`, database `postgres`)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="autoscope-pg-"))  # the server user must reach it
    data = base / "pgdata"
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        base.chmod(0o777)
    port = _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)  # noqa: E731
    run(initdb, "-D", str(data), "-U", "optuna", "--auth=trust")
    subprocess.run(  # the server must not hold our pipes: its log goes to a file
        [*as_user, pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "start",
         "-o", f"-p {port} -k {base} -h 127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg2://optuna@127.0.0.1:{port}/postgres"  # initdb's own database
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )


def test_two_sweepers_share_a_postgres_study(toy, postgres) -> None:
    code = (
        "import sys; from autoscope.stages.app import run_app; "
        "sys.exit(run_app('toy', 'hpo_toy:task', sys.argv[1], sys.argv[2:], 'autoscope toy'))"
    )
    args = ["-m", "hpo.n_trials=6", "toy.sleep_s=1.0", f"hpo.storage={postgres}"]
    cmd = [sys.executable, "-c", code, str(toy.recipe), *args]
    procs = [subprocess.Popen(cmd, cwd=toy.root, env=os.environ) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    study = optuna.load_study(study_name="toy-42", storage=postgres)
    t = study.trials
    assert all(x.state == TrialState.COMPLETE for x in t) and 6 <= len(t) <= 7
    assert len({x.user_attrs["worker"] for x in t}) == 2  # both sweepers ran trials
