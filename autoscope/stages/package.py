"""`autoscope package`: bundle archived models into a BentoML bento (service + models + env)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoscope.serve.build import PackageSpec


def package_spec(cfg: Any) -> PackageSpec:
    """The typed `PackageSpec` of `cfg.package` (the slide job's settings checked as infer's)."""
    from autoscope.config import to_dict
    from autoscope.serve.build import ContainerSpec, ModelRef, PackageSpec

    p = to_dict(cfg.package)
    c = p["container"]
    return PackageSpec(
        project=str(cfg.project.name),
        name=str(p["name"]),
        purpose=str(p["purpose"]),
        models=tuple(
            ModelRef(str(m["name"]), m.get("version"), m.get("alias")) for m in p["models"]
        ),
        jobs_dir=str(p["jobs_dir"]),
        allowed_roots=tuple(str(r) for r in p["allowed_roots"]),
        container=ContainerSpec(
            host=str(c["host"]),
            allowed_roots=tuple(str(r) for r in c["allowed_roots"]),
            jobs_dir=str(c["jobs_dir"]),
        ),
        host=str(p["host"]),
        cpu_index=str(p["torch_cpu_index"]),
        resources=dict(p.get("resources") or {}),
        max_batch_size=int(p["batching"]["max_batch_size"]),
        max_latency_ms=int(p["batching"]["max_latency_ms"]),
        workers=int(p["workers"]),
        threads=int(p["threads"]),
        torch_threads=int(p["torch_threads"]),
        queue_limit=int(p["queue_limit"]),
        concurrency=int(p["concurrency"]),
        timeout_s=int(p["timeout_s"]),
        infer=dict(p.get("infer") or {}),
        python_packages=tuple(str(n) for n in p["python_packages"]),
    )


def run(cfg: Any) -> dict:
    """Build the bento named by `cfg.package`; print how to serve it here and containerize it.

    The bento version is a hash of its bentofile and source, so an unchanged package is not
    rebuilt. Every package it installs is pinned, with its dependency closure (`serve.pins`).
    """
    import shlex

    from autoscope.archive import bento_store
    from autoscope.archive.select import mlflow_client
    from autoscope.atomic import write_json
    from autoscope.config import ROOT, stores_spec
    from autoscope.serve import build, pins

    spec = package_spec(cfg)
    stores = stores_spec(cfg)
    client = mlflow_client(stores.mlflow_uri)
    bento_store.use_bentoml_home(stores.bentoml_home)
    tags = build.resolve_models(client, spec.project, spec.models)
    reqs = pins.requirements(
        spec.python_packages,
        gpu=spec.gpu,
        cpu_index=spec.cpu_index,
        python_version=build.PYTHON_VERSION,
        constraints=ROOT / "constraints.txt",  # a source checkout's pins; else the installed ones
    )
    bentofile = build.bentofile(spec, tags, reqs)
    out = stores.outputs / "package" / spec.name
    write_json(out / "service.json", bentofile["args"]["config"])
    build.write_yaml(out / "bentofile.yaml", bentofile)
    version = build.content_version(bentofile, ROOT)
    bento_dir = Path(stores.bentoml_home) / "bentos" / spec.name / version
    built = not (bento_dir / "bento.yaml").is_file()
    if built:
        tag = build.build_bento(out / "bentofile.yaml", ROOT, stores.bentoml_home, version)
    else:
        tag = f"{spec.name}:{version}"
    dockerfile = bento_dir / "env" / "docker" / "Dockerfile"
    home = f"BENTOML_HOME={shlex.quote(str(stores.bentoml_home))}"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in spec.serve_env().items())
    serve = f"{home} {env} bentoml serve {tag}"  # the project's folders, on 127.0.0.1
    print(f"serve here: {serve}")
    print(f"next: {home} bentoml containerize {tag}")
    return {
        "bento": tag,
        "models": ",".join(tags),
        "path": str(bento_dir),
        "dockerfile": str(dockerfile) if dockerfile.is_file() else "missing",
        "next": f"bentoml containerize {tag}",
        "serve": serve,
        "built": built,
    }
