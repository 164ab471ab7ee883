"""A built bento moves to another machine unchanged: no host path, every package pinned."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import psutil
import yaml


def _host_paths(packaged: dict[str, Any]) -> list[str]:
    ws = Path(packaged["cfg"].paths.workspace)
    here = [str(ws), os.path.realpath(ws), "/work/", os.path.expanduser("~") + "/"]
    return sorted({p for p in here if p not in ("/", "//")})


def test_bento_holds_no_host_path(packaged: dict) -> None:
    bento = Path(packaged["built"]["path"])
    needles = [p.encode() for p in _host_paths(packaged)]
    hits = [
        f"{f.relative_to(bento)}: {n.decode()}"
        for f in sorted(bento.rglob("*"))
        if f.is_file()
        for n in needles
        if n in f.read_bytes()
    ]
    assert hits == []
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    config = info["args"]["config"]
    assert config["allowed_roots"] == ["/data"] and config["jobs_dir"] == "/tmp/autoscope/jobs"
    assert config["host"] == "127.0.0.1"
    assert info["services"][0]["config"]["http"]["host"] == "127.0.0.1"
    envs = {e["name"]: e["value"] for e in info["envs"]}
    assert envs["AUTOSCOPE_ALLOWED_ROOTS"] == "/data" and envs["BENTOML_HOST"] == "0.0.0.0"
    docker = (bento / "env" / "docker" / "Dockerfile").read_text()
    for line in (
        "ARG AUTOSCOPE_ALLOWED_ROOTS=/data",
        "ENV AUTOSCOPE_JOBS_DIR=$AUTOSCOPE_JOBS_DIR",
        "ARG BENTOML_HOST=0.0.0.0",
        "ARG UV_INDEX_STRATEGY=unsafe-best-match",
    ):
        assert line in docker
    readme = (bento / "README.md").read_text()
    assert "AUTOSCOPE_ALLOWED_ROOTS" in readme and "AUTOSCOPE_JOBS_DIR" in readme


def _requirements(bento: Path) -> tuple[dict[str, str], list[str]]:
    lines = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    options = [ln for ln in lines if ln.startswith("--")]
    pins = [ln for ln in lines if ln.strip() and not ln.startswith(("#", "--"))]
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.\-]*==\S+", p) for p in pins), pins
    names = [p.split("==")[0] for p in pins]
    assert len(names) == len(set(names)), "a package pinned twice"
    return dict(p.split("==") for p in pins), options


def test_cpu_bento_pins_the_closure_and_torch_cpu(packaged: dict) -> None:
    import importlib.metadata as md

    pins, options = _requirements(Path(packaged["built"]["path"]))
    assert pins["torch"] == "2.14.1+cpu" and pins["torchvision"] == "0.29.1+cpu"
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    # transitive: pydantic-core (pydantic), sympy (torch), starlette (bentoml), at what is installed
    for name in ("pydantic-core", "sympy", "starlette", "numpy", "bentoml"):
        assert pins[name] == md.version(name), name
    assert not [n for n in pins if n.startswith(("nvidia-cu", "cuda-")) or n == "triton"]


def test_gpu_bento_takes_torch_cuda_build(packaged: dict) -> None:
    from autoscope.config import compose
    from autoscope.stages import package

    ws = packaged["cfg"].paths.workspace
    cfg = compose("demo", [f"paths.workspace={ws}", "package.resources.gpu=1"], stage="package")
    built = package.run(cfg)
    bento = Path(built["path"])
    pins, options = _requirements(bento)
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1" and options == []
    assert "triton" in pins and any(n.startswith("nvidia-") for n in pins)
    docker = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "UV_INDEX_STRATEGY" not in docker and "BENTOML_HOST=0.0.0.0" in docker


def test_served_bento_binds_loopback_and_takes_serve_time_folders(
    packaged: dict, server: str
) -> None:
    port = int(server.rsplit(":", 1)[1])
    listening = {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    assert listening == {"127.0.0.1"}
    run = packaged["built"]["serve"]
    data = str(packaged["cfg"].paths.data)
    assert f"AUTOSCOPE_ALLOWED_ROOTS={data}" in run and "bentoml serve" in run
    # (the slide job tests read a slide under the project's data and write into its jobs_dir:
    # both come from the serve-time environment, the bento itself holds /data and /tmp)
