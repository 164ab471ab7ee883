"""A real bento of a tiny archived model, served by `bentoml serve` on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "archive"))
from fakes import compose_cfg, fake_run  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Workspace with one archived run and a built bento; a small slide inside the data root."""
    from autoscope.config import compose
    from autoscope.slides.synth import make_synthetic_slide
    from autoscope.stages import archive, package

    ws = tmp_path_factory.mktemp("ws")
    cfg = compose_cfg(ws)
    fake_run(cfg, val_acc=0.9)
    t0 = time.perf_counter()
    archived = archive.run(cfg)
    t1 = time.perf_counter()
    slides = Path(cfg.paths.data) / "slides"
    slide = make_synthetic_slide(slides / "job_000.tif", seed=3, width_px=1536, height_px=1024)
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "broken.svs", slides / "broken.svs")
    outside = make_synthetic_slide(
        ws / "elsewhere" / "secret.tif", seed=4, width_px=512, height_px=512
    )
    pcfg = compose(
        "demo",
        [
            f"paths.workspace={ws}",
            "package.batching.max_batch_size=16",
            "package.batching.max_latency_ms=20000",
        ],
        stage="package",
    )
    built = package.run(pcfg)
    t2 = time.perf_counter()
    return {
        "cfg": pcfg,
        "archived": archived,
        "built": built,
        "slide": slide.path,
        "broken": slides / "broken.svs",
        "outside": outside.path,
        "archive_s": t1 - t0,
        "package_s": t2 - t1,
    }


@pytest.fixture(scope="module")
def server(packaged: dict[str, Any]) -> Iterator[str]:
    """`bentoml serve <bento tag>` in its own process group; the URL; stopped at the end."""
    import httpx

    from autoscope.stages.package import package_spec

    cfg = packaged["cfg"]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "BENTOML_HOST"}
    env |= package_spec(cfg).serve_env()  # the project's folders, at serve time (as documented)
    env |= {"BENTOML_HOME": str(cfg.paths.bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    exe = Path(sys.executable).with_name("bentoml")
    log = open(Path(cfg.paths.outputs) / "serve.log", "wb")  # noqa: SIM115 - closed below
    # no --host: the bento's own configuration binds 127.0.0.1
    cmd = [str(exe), "serve", packaged["built"]["bento"], "--port", str(port)]
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
        packaged["serve_ready_s"] = time.perf_counter() - t0
        packaged["serve_log"] = Path(log.name)
        yield url
    finally:
        from autoscope.procs import stop_group

        stop_group(proc, timeout_s=20)
        log.close()
