"""`bentoml serve <bento>` on 127.0.0.1 in its own process group, for tests (stopped on exit)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(bento: str, env_extra: dict[str, str], log_path: Path) -> Iterator[tuple[str, float]]:
    """Serve `bento` (a tag) with `env_extra` (BENTOML_HOME, the serve-time folders); yield
    (url, seconds until ready). The bento's own configuration binds 127.0.0.1 (no --host)."""
    import httpx

    from autoscope.procs import stop_group

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BENTOML_HOST"}
    env |= {"BENTOML_DO_NOT_TRACK": "True", **env_extra}
    exe = Path(sys.executable).with_name("bentoml")
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    cmd = [str(exe), "serve", bento, "--port", str(port)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited: {Path(log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > 90:
                raise RuntimeError("bentoml serve not ready after 90 s")
            time.sleep(0.2)
        yield url, time.perf_counter() - t0
    finally:
        stop_group(proc, timeout_s=20)
        log.close()


@contextmanager
def serving_workspace(ws: Path) -> Iterator[str]:
    """Serve the one bento a workspace's pipeline built (its own BentoML home); yield the URL."""
    home = ws / "outputs" / "_state" / "bentoml"
    (bento,) = [p.parent for p in (home / "bentos").glob("*/*/bento.yaml")]
    env = {"BENTOML_HOME": str(home), "AUTOSCOPE_ALLOWED_ROOTS": str(ws / "data")}
    with serving(f"{bento.parent.name}:{bento.name}", env, ws / "serve.log") as (url, _):
        yield url
