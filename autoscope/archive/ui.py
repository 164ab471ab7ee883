"""The MLflow UI on the project's tracking store, bound to 127.0.0.1 (`autoscope ui`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from autoscope.errors import UserError
from autoscope.procs import stop_group
from autoscope.project import Stores


def ui_command(stores: Stores, port: int) -> list[str]:
    """The `mlflow ui` command line on the project's store, bound to 127.0.0.1."""
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", str(stores.mlflow_uri),
        "--default-artifact-root", Path(stores.mlflow_artifacts).as_uri(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> bool:
    """Poll `url` until it answers 200, the process exits, or the timeout passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def serve_ui(stores: Stores, project: str, port: int, check: bool = False) -> None:
    """Serve the MLflow UI until Ctrl-C; with `check`, start it, wait until it answers, stop it.

    Raises:
        UserError: the UI did not answer (the port is taken, most likely).
    """
    Path(stores.mlflow_artifacts).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        ui_command(stores, port), env=env, start_new_session=True, cwd=stores.workspace
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_http(f"{url}/health", 120.0, proc):
            raise UserError(f"MLflow UI did not start on {url} (is the port taken? use --port N)")
        print(f"MLflow UI for project '{project}': {url}  (Ctrl-C stops it)", flush=True)
        if not check:
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_group(proc)
