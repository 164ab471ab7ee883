"""The record of a training run, kept through its Lightning logger (MLflow or CSV).

With an `MLFlowLogger` the run is an MLflow run (params, tags, metrics, artefacts, status) and its
id is MLflow's. With any other logger (e.g. `csv_logger`: `metrics.csv` + `hparams.yaml` in the
run folder) there is no MLflow record: the run id is the logger's run name, the run folder holds
every file, and the status goes to `hparams.yaml`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PARAM_MAX_CHARS = 6000  # MLflow's limit on one param value


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested plain mapping as `{dotted.key: str(value)}` (lists kept whole as one value)."""
    out: dict[str, str] = {}
    for k, v in (data or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
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


def csv_logger(save_dir: str | Path, run_name: str, tags: Mapping[str, str]) -> Any:
    """Lightning's CSVLogger writing straight into `<save_dir>/<run_name>/` (the run folder).

    The `_target_` of `conf/logger/csv.yaml`; takes `run_name` and `tags` like `MLFlowLogger`
    (the tags go to `hparams.yaml` as `tags.<key>`).
    """
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(save_dir=str(save_dir), name=run_name, version="")
    logger.log_hyperparams({f"tags.{k}": str(v) for k, v in tags.items()})
    return logger


def _mlflow(logger: Any) -> Any | None:
    """The MlflowClient behind an MLFlowLogger, else None."""
    from lightning.pytorch.loggers import MLFlowLogger

    return logger.experiment if isinstance(logger, MLFlowLogger) else None


def run_id(logger: Any) -> str:
    """The run's id: MLflow's run id (the run is created now), else the logger's run name."""
    return str(logger.run_id) if _mlflow(logger) is not None else str(logger.name)


def log_params(logger: Any, params: Mapping[str, str]) -> None:
    """Log run params (MLflow: batches of 100, values up to `PARAM_MAX_CHARS`)."""
    client = _mlflow(logger)
    if client is None:
        logger.log_hyperparams(dict(params))
        return
    from mlflow.entities import Param

    items = [Param(k, str(v)[:PARAM_MAX_CHARS]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(logger.run_id, params=items[i : i + 100])


def log_metrics(logger: Any, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log final scalar metrics at `step` (MLflow: keys as given, batches of 1000)."""
    client = _mlflow(logger)
    if client is None:
        logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
        logger.save()
        return
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
    for i in range(0, len(items), 1000):
        client.log_batch(logger.run_id, metrics=items[i : i + 1000])


def log_artifacts(logger: Any, files: Iterable[Path]) -> None:
    """Attach files to the MLflow run (other loggers: they already lie in the run folder)."""
    client = _mlflow(logger)
    for f in files if client is not None else ():
        client.log_artifact(logger.run_id, str(f))


def finish(logger: Any, status: str) -> None:
    """Mark the run `FINISHED`, `FAILED` or `KILLED` (a pruned or interrupted trial)."""
    client = _mlflow(logger)
    if client is not None:
        client.set_terminated(logger.run_id, status)
        return
    logger.log_hyperparams({"status": status})
    logger.save()
