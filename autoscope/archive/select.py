"""Choose the training run to archive from the project's MLflow experiment and check it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoscope.errors import UserError


def mlflow_client(tracking_uri: str) -> Any:
    """An MLflow client on the project's tracking + registry store (SQLite by default)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_id(client: Any, project: str) -> str:
    """Id of the project's experiment (named after the project).

    Raises:
        UserError: the experiment does not exist (nothing was trained yet).
    """
    exp = client.get_experiment_by_name(project)
    if exp is None:
        raise UserError(f"no MLflow experiment '{project}' yet: run `autoscope train` first")
    return exp.experiment_id


def candidate_runs(client: Any, exp_id: str, metric: str, mode: str) -> list[Any]:
    """Finished runs that logged `metric`, best first (`mode` max or min)."""
    runs = client.search_runs(
        [exp_id], filter_string="attributes.status = 'FINISHED'", max_results=5000
    )
    scored = [r for r in runs if metric in r.data.metrics]
    return sorted(scored, key=lambda r: r.data.metrics[metric], reverse=(mode == "max"))


def get_run(client: Any, exp_id: str, run_id: str) -> Any:
    """A run of this project's experiment by id.

    Raises:
        UserError: unknown id, another project's run, or a run that did not finish.
    """
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"run={run_id}: no such MLflow run (see `autoscope runs list`)") from None
    if run.info.experiment_id != exp_id:
        raise UserError(f"run={run_id}: belongs to another project's experiment")
    if run.info.status != "FINISHED":
        raise UserError(f"run={run_id}: the run is {run.info.status}, not FINISHED")
    return run


def check_thresholds(metrics: dict[str, float], minimum: dict, maximum: dict, run_id: str) -> None:
    """Refuse a run whose metrics miss the archive thresholds.

    Args:
        metrics: the run's metrics.
        minimum: metric -> lowest acceptable value (e.g. `val/acc: 0.8`).
        maximum: metric -> highest acceptable value (e.g. `val/loss: 1.0`).
        run_id: named in the error.

    Raises:
        UserError: a threshold metric is missing or out of bounds (one line naming it).
    """
    for bound, table in (("min", minimum), ("max", maximum)):
        for name, limit in (table or {}).items():
            if name not in metrics:
                raise UserError(f"archive.thresholds.{bound}: run {run_id} has no metric '{name}'")
            value = float(metrics[name])
            low = bound == "min" and value < float(limit)
            high = bound == "max" and value > float(limit)
            if low or high:
                word = "below the minimum" if low else "above the maximum"
                raise UserError(
                    f"run {run_id}: {name}={value:.4f} is {word} {float(limit):g} "
                    f"(archive.thresholds.{bound} in conf/archive/)"
                )


def has_weights(client: Any, run_id: str, train_runs: Path) -> bool:
    """Whether a run left `model.pt` in its run folder or its MLflow artefacts."""
    from autoscope.archive.sources import artifact_files

    if (train_runs / run_id / "model.pt").is_file():
        return True
    return any(Path(a).name == "model.pt" for a in artifact_files(client, run_id))


def pick_run(
    client: Any, exp_id: str, ref: str, metric: str, mode: str, train_runs: Path, project: str
) -> Any:
    """The run to archive: `ref` (an id) or, for `best`, the best finished run with weights.

    Raises:
        UserError: unknown id, or no finished run with `metric` and weights.
    """
    if str(ref) != "best":
        return get_run(client, exp_id, str(ref))
    for run in candidate_runs(client, exp_id, metric, mode):
        if has_weights(client, run.info.run_id, train_runs):
            return run
    raise UserError(
        f"no finished run with metric '{metric}' and weights in project '{project}': "
        "run `autoscope train` first"
    )
