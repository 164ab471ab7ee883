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


def _git(repo: str | Path, *args: str) -> str | None:
    """The output of `git <args>` in `repo`, or None (no git, not a repository, no commit)."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.strip()


def git_commit(repo: str | Path) -> str | None:
    """The commit checked out in the git repository holding `repo`, or None."""
    return _git(repo, "rev-parse", "HEAD") or None


def code_version(repo: str | Path) -> str:
    """`git rev-parse HEAD`, plus `-dirty` when tracked files changed; `unknown` outside git."""
    sha = git_commit(repo)
    if sha is None:
        return "unknown"
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def source_tags(workspace: str | Path, entry_point: str) -> dict[str, str]:
    """MLflow's source tags of a run: what ran it and, in a git workspace, the commit.

    `mlflow.source.git.commit` is the workspace's commit (its recipes, `dvc.yaml` and the DVC
    pointers of its data); the autoscope code's own commit is the `code_version` tag.
    """
    tags = {"mlflow.source.name": entry_point, "mlflow.source.type": "LOCAL"}
    sha = git_commit(workspace) if Path(workspace).is_dir() else None
    if sha:
        tags["mlflow.source.git.commit"] = sha
    return tags


KEPT = "kept/"  # prefix of the figures of the weights a run keeps (`kept/val/acc`, `kept/step`)


def kept_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's summary: its metrics with the kept weights' figures under their plain names.

    `val/*` in MLflow are the per-epoch curves, whose latest value is the last epoch's; the
    weights a run keeps (its best checkpoint) may be an earlier epoch's, recorded once as
    `kept/val/*`. Read a run's `val/acc` for selection, thresholds and cards through this.
    """
    out = {k: float(v) for k, v in metrics.items()}
    out.update({k[len(KEPT) :]: float(v) for k, v in metrics.items() if k.startswith(KEPT)})
    return out


def log_kept(logger: Any, metrics: Mapping[str, float], kept_step: int, step: int) -> None:
    """Log a run's final figures without touching its `val/*` curves.

    The validation figures of the kept weights go under `kept/val/*` at `kept_step` (the step
    their checkpoint was taken; there the `val/*` curves already hold the same values), with
    `kept/step`; everything else (`test/*`, timings) at `step`.
    """
    val = {f"{KEPT}{k}": v for k, v in metrics.items() if k.startswith("val/")}
    log_metrics(logger, {**val, f"{KEPT}step": float(kept_step)}, step=kept_step)
    log_metrics(logger, {k: v for k, v in metrics.items() if not k.startswith("val/")}, step)


def log_dataset(logger: Any, manifest: Path, name: str, version: str) -> None:
    """Record the training data as the run's MLflow dataset input (context `training`).

    Args:
        logger: the run's logger (nothing is recorded without MLflow).
        manifest: the dataset's `manifest.parquet` (schema and row count; source: its folder).
        name: the dataset's name.
        version: its version (the DVC hash), the dataset's digest in MLflow.
    """
    client = _mlflow(logger)
    if client is None:
        return
    import warnings

    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    df = pd.read_parquet(manifest)
    targets = "label" if "label" in df.columns else None
    source = str(Path(manifest).parent)
    with warnings.catch_warnings():  # MLflow's hints on source kinds and integer columns
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(df, source=source, targets=targets, name=name, digest=version)
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training")]
    client.log_inputs(logger.run_id, [DatasetInput(ds._to_mlflow_entity(), tags)])


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


OWNER_TAGS = ("autoscope.owner.host", "autoscope.owner.pid", "autoscope.owner.start")


def owner_tags() -> dict[str, str]:
    """Tags naming this process as a run's owner (host, pid, start time; see `reap_dead_runs`)."""
    from autoscope.procs import me

    owner = me()
    return dict(zip(OWNER_TAGS, (owner.host, str(owner.pid), f"{owner.start:.3f}"), strict=True))


def run_owner(tags: Mapping[str, str]) -> Any | None:
    """The `procs.Owner` a run's tags name, or None (a run from before owners were recorded)."""
    from autoscope.procs import Owner

    host, pid, start = (tags.get(k) for k in OWNER_TAGS)
    try:
        return Owner(str(host), int(str(pid)), float(str(start))) if host else None
    except ValueError:
        return None


def reap_dead_runs(client: Any, experiment_id: str, say: Any = print) -> list[str]:
    """Mark the experiment's RUNNING runs whose owner process is gone as KILLED.

    A run is reaped when its owner tags (`owner_tags`) name this host and that process no longer
    runs (its pid is free, or taken by a process that started at another time). Runs of other
    hosts and runs without owner tags are left as they are. `say` gets one line per reaped run.

    Returns:
        the ids of the runs marked KILLED.
    """
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000
    )
    reaped = []
    for r in runs:
        owner = run_owner(r.data.tags)
        if owner is None or owner.alive() is not False:
            continue
        client.set_terminated(r.info.run_id, "KILLED")
        reaped.append(r.info.run_id)
        say(
            f"run {r.info.run_id} ({r.info.run_name}) was RUNNING but its process {owner.pid} "
            f"on {owner.host} is gone: marked KILLED"
        )
    return reaped
