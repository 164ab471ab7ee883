"""A real bento of a tiny archived model, served by `bentoml serve` on 127.0.0.1."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "archive"))
from fakes import compose_cfg, fake_run  # noqa: E402
from serving import serving  # noqa: E402


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
    from autoscope.stages.package import package_spec

    cfg = packaged["cfg"]
    env = package_spec(cfg).serve_env()  # the project's folders, at serve time (as documented)
    env |= {"BENTOML_HOME": str(cfg.paths.bentoml_home)}
    log = Path(cfg.paths.outputs) / "serve.log"
    with serving(packaged["built"]["bento"], env, log) as (url, ready_s):
        packaged["serve_ready_s"] = ready_s
        packaged["serve_log"] = log
        yield url
