"""`autoscope package`: bundle archived models into a BentoML bento (service + models + env)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run(cfg: Any) -> dict:
    """Build the bento named by `cfg.package`; print `bentoml containerize <tag>` as next step.

    The bento version is a hash of its bentofile and source, so an unchanged package is not
    rebuilt.
    """
    from autoscope.archive import bento_store, card, runs
    from autoscope.config import ROOT
    from autoscope.serve import build

    client = runs.mlflow_client(cfg.paths.mlflow_uri)
    bento_store.use_bentoml_home(cfg.paths.bentoml_home)
    tags = build.resolve_models(client, cfg.project.name, list(cfg.package.models))
    packages = build.pinned(list(cfg.package.python_packages), ROOT / "constraints.txt")
    spec = build.bentofile(cfg, tags, packages)
    out = Path(cfg.paths.outputs) / "package" / str(cfg.package.name)
    card.write_json(out / "service.json", spec["args"]["config"])
    build.write_yaml(out / "bentofile.yaml", spec)
    version = build.content_version(spec, ROOT)
    bento_dir = Path(cfg.paths.bentoml_home) / "bentos" / str(cfg.package.name) / version
    built = not (bento_dir / "bento.yaml").is_file()
    if built:
        tag = build.build_bento(out / "bentofile.yaml", ROOT, Path(cfg.paths.bentoml_home), version)
    else:
        tag = f"{cfg.package.name}:{version}"
    dockerfile = bento_dir / "env" / "docker" / "Dockerfile"
    print(f"next: BENTOML_HOME={cfg.paths.bentoml_home} bentoml containerize {tag}")
    return {
        "bento": tag,
        "models": ",".join(tags),
        "path": str(bento_dir),
        "dockerfile": str(dockerfile) if dockerfile.is_file() else "missing",
        "next": f"bentoml containerize {tag}",
        "built": built,
    }
