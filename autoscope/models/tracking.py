"""MLflow bookkeeping of a training run: params, tags, the code version and artefacts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

PARAM_MAX_CHARS = 6000  # MLflow's limit on one param value


def flatten(cfg: Any, prefix: str = "") -> dict[str, str]:
    """The resolved config as `{dotted.key: str(value)}` (lists kept whole as one value)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    out: dict[str, str] = {}
    for k, v in (data or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v)[:PARAM_MAX_CHARS]
    return out


def code_version(repo: str | Path) -> str:
    """`git rev-parse HEAD`, plus `-dirty` when tracked files changed; `unknown` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def start_run(cfg: Any, run_name: str, tags: dict[str, str]) -> tuple[Any, str]:
    """Create a run in the project's experiment (created if missing); returns (client, run_id)."""
    import mlflow

    from autoscope.stages.project import ensure_experiment

    exp_id = ensure_experiment(cfg)
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    return client, run.info.run_id


def log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    """Log params in batches of 100 (MLflow's limit per call)."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(client: Any, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log final scalar metrics (one batch)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000])
