"""Choose the training run to archive from the project's MLflow experiment and check it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoscope.errors import UserError
from autoscope.models.tracking import kept_metrics, reap_dead_runs


def mlflow_client(tracking_uri: str) -> Any:
    """An MLflow client on the project's tracking + registry store (SQLite by default)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_id(client: Any, project: str, say: Any = print) -> str:
    """Id of the project's experiment (named after the project), its dead runs reaped first.

    Runs left RUNNING by a killed training are marked KILLED (`tracking.reap_dead_runs`, one
    line each to `say`), so they are never taken for a run in progress nor ranked.

    Raises:
        UserError: the experiment does not exist (nothing was trained yet).
    """
    exp = client.get_experiment_by_name(project)
    if exp is None:
        raise UserError(f"no MLflow experiment '{project}' yet: run `autoscope train` first")
    reap_dead_runs(client, exp.experiment_id, say)
    return exp.experiment_id


def candidate_runs(client: Any, exp_id: str, metric: str, mode: str) -> list[Any]:
    """Finished runs that logged `metric`, best first (`mode` max or min)."""
    runs = client.search_runs(
        [exp_id], filter_string="attributes.status = 'FINISHED'", max_results=5000
    )
    scored = [r for r in runs if metric in r.data.metrics]
    return sorted(scored, key=lambda r: score(r, metric), reverse=(mode == "max"))


def score(run: Any, metric: str) -> float:
    """A run's `metric` for its kept weights (`kept/<metric>` where logged, else `<metric>`)."""
    return kept_metrics(run.data.metrics)[metric]


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
            if limit is None:  # `val/acc: null` lifts a default bound (another family's metric)
                continue
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


def sweep_choice(study_dir: Path) -> tuple[str | None, str]:
    """The run a finished sweep chose (`study.json`): its retrained winner, else its best trial;
    in a single run's job folder (`run.json`, the pipeline's train output), that run.

    Returns:
        (run id or None when the folder names no run, what it is: `final`, `best trial #N`...).
    """
    import json

    path = study_dir / "study.json"
    single = study_dir / "run.json"
    if not path.is_file() and single.is_file():
        rid = json.loads(single.read_text()).get("run_id")
        return (str(rid) if rid else None), "the training run"
    if not path.is_file():
        return None, "no study.json"
    data = json.loads(path.read_text())
    if data.get("final_run_id"):
        return str(data["final_run_id"]), "the sweep's retrained winner"
    best = data.get("best_trial")
    label = f"best trial #{best}" if best is not None else "best trial"
    return (str(data["best_run_id"]) if data.get("best_run_id") else None), label


def pick_run(
    client: Any,
    exp_id: str,
    ref: str,
    metric: str,
    mode: str,
    train_runs: Path,
    project: str,
    dataset_version: str | None = None,
    study_dir: Path | None = None,
    say: Any = print,
) -> Any:
    """The run to archive: `ref` (an id) or, for `best`, the champion of the recipe.

    `best` is the sweep's choice when the recipe names a study that finished here (`study.json`
    in `study_dir`: the retrained winner, else the best trial, as `best.yaml` names it); otherwise
    the best finished run with weights among the runs of `dataset_version` (ties: the oldest run).
    A run on another dataset version is never the champion. `say` gets one line naming what was
    compared.

    Raises:
        UserError: unknown id; the sweep's run is missing, unfinished or on another dataset;
            no finished run with `metric` and weights on the dataset.
    """
    if str(ref) != "best":
        return get_run(client, exp_id, str(ref))
    if study_dir is not None:
        chosen, what = sweep_choice(study_dir)
        if chosen is not None:
            run = get_run(client, exp_id, chosen)
            version = run.data.tags.get("dataset_version")
            if dataset_version and version and version != dataset_version:
                raise UserError(
                    f"run=best: sweep {study_dir.name} chose run {chosen} on dataset version "
                    f"{version}, the recipe's dataset is {dataset_version}: run the sweep again"
                )
            if not has_weights(client, chosen, train_runs):
                raise UserError(f"run=best: the sweep's run {chosen} left no model.pt")
            sweep = (study_dir / "study.json").is_file()
            where = f"sweep {study_dir.name}" if sweep else study_dir.name
            src = "study.json" if sweep else "run.json"
            say(f"champion: {what} of {where}, run {chosen} (its {src})")
            return run
    runs = candidate_runs(client, exp_id, metric, mode)
    if dataset_version:
        runs = [r for r in runs if r.data.tags.get("dataset_version") == dataset_version]
    runs = [r for r in runs if has_weights(client, r.info.run_id, train_runs)]
    if runs:
        top = score(runs[0], metric)
        tied = [r for r in runs if score(r, metric) == top]
        run = min(tied, key=lambda r: (r.info.start_time or 0, r.info.run_id))
        scope = f"dataset version {dataset_version}" if dataset_version else "every dataset"
        say(
            f"champion: best {metric} of {len(runs)} finished run(s) on {scope}: "
            f"run {run.info.run_id} ({metric}={top:.4f})"
        )
        return run
    on = f" on dataset version {dataset_version}" if dataset_version else ""
    raise UserError(
        f"no finished run with metric '{metric}' and weights{on} in project '{project}': "
        "run `autoscope train` first"
    )
