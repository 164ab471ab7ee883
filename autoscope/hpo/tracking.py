"""The study's parent run in MLflow: trials' runs are nested under it, pictures hang on it.

The parent run carries the tag `autoscope.kind=hpo_study` and no `cfg.metric` metric of its own
(its best value is `hpo/best_value`), so run tables and archive selection can tell it from a model
run. Its id is kept as the study user attr `mlflow_parent_run_id`: a resumed sweep logs to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoscope.hpo.study import masked
from autoscope.project import ProjectSpec, Stores, ensure_experiment


class StudyRun:
    """One MLflow parent run per Optuna study (created once, reopened on resume)."""

    @classmethod
    def owned(
        cls, project: ProjectSpec, stores: Stores, study: Any, *, storage: str, metric: str,
        recipe: str | None, echo: Any,
    ) -> StudyRun:  # fmt: skip
        """The study's parent run, owned by this process; runs left RUNNING by dead ones reaped."""
        from autoscope.models.tracking import owner_tags, reap_dead_runs

        run = cls(project, stores, study, storage=storage, metric=metric, recipe=recipe)
        for key, value in owner_tags().items():  # this sweep owns the study's parent run now
            run.client.set_tag(run.run_id, key, value)
        reap_dead_runs(run.client, run.experiment_id, echo)
        return run

    def __init__(
        self,
        project: ProjectSpec,
        stores: Stores,
        study: Any,
        *,
        storage: str,
        metric: str,
        recipe: str | None = None,
    ) -> None:
        import mlflow

        self.client = mlflow.MlflowClient(tracking_uri=stores.mlflow_uri)
        self.experiment_id = ensure_experiment(project, stores)
        self.notes: list[str] = []
        run_id = study.user_attrs.get("mlflow_parent_run_id")
        from autoscope.models.tracking import owner_tags

        owner = owner_tags()  # a reaper elsewhere sees a live owner before the run is RUNNING
        if run_id and self._exists(run_id):
            for key, value in owner.items():
                self.client.set_tag(run_id, key, value)
            self.client.update_run(run_id, status="RUNNING")
        else:
            tags = {
                "autoscope.kind": "hpo_study",
                "optuna.study": study.study_name,
                "optuna.storage": masked(storage),
                "project": project.name,
                "recipe": str(recipe),
                "hpo.metric": metric,
                **owner,
            }
            run = self.client.create_run(
                self.experiment_id, run_name=f"hpo-{study.study_name}", tags=tags
            )
            run_id = run.info.run_id
            study.set_user_attr("mlflow_parent_run_id", run_id)
        self.run_id: str = run_id

    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.experiment_id == self.experiment_id
        except Exception:
            return False

    def log_trial(self, number: int, value: float | None, child_run_id: str | None) -> None:
        """Log a trial's value as step `number` of `hpo/trial_value`; nest its run under ours."""
        if value is not None:
            self.client.log_metric(self.run_id, "hpo/trial_value", float(value), step=number)
        if not child_run_id:
            return
        try:
            self.client.set_tag(child_run_id, "mlflow.parentRunId", self.run_id)
            self.client.set_tag(child_run_id, "optuna.trial", str(number))
        except Exception as e:  # the objective named a run this store does not hold
            why = type(e).__name__
            self.notes.append(f"trial #{number}: run {child_run_id} not nested ({why})")

    def nest(self, child_run_id: str, label: str) -> None:
        """Nest another run (the retrain) under the study's parent run."""
        try:
            self.client.set_tag(child_run_id, "mlflow.parentRunId", self.run_id)
            self.client.set_tag(child_run_id, "optuna.trial", label)
        except Exception as e:
            self.notes.append(f"{label}: run {child_run_id} not nested ({type(e).__name__})")

    def finish(self, result: dict[str, Any], files: list[Path], status: str = "FINISHED") -> None:
        """Log the summary metrics, best params (as tags: they change on resume) and files."""
        metrics = {f"hpo/{k}": float(result[k]) for k in ("n_complete", "n_pruned", "n_failed")}
        for key in ("best_value", "best_test_value", "val_test_gap"):
            if result.get(key) is not None:
                metrics[f"hpo/{key}"] = float(result[key])
        final = result.get("final") or {}
        for k, v in final.items():
            if k.startswith(("val/", "test/")) and isinstance(v, (int, float)):
                metrics[f"hpo/final_{k.replace('/', '_')}"] = float(v)
        for k, v in (result.get("budget") or {}).items():
            metrics[f"hpo/budget_{k}"] = float(v)
        for k, v in metrics.items():
            self.client.log_metric(self.run_id, k, v)
        for k, v in (result.get("best_params") or {}).items():
            self.client.set_tag(self.run_id, f"best.{k}", str(v))
        if result.get("best_run_id"):
            self.client.set_tag(self.run_id, "best.run_id", str(result["best_run_id"]))
        if final.get("run_id"):  # the model the sweep hands on: the winner retrained
            self.client.set_tag(self.run_id, "final.run_id", str(final["run_id"]))
            self.nest(final["run_id"], "final")
            if result.get("val_test_gap") is not None:  # the model card reads it from the run
                try:
                    self.client.log_metric(
                        str(final["run_id"]),
                        "selection/val_test_gap",
                        float(result["val_test_gap"]),
                    )
                except Exception as e:
                    self.notes.append(f"final run: gap not logged ({type(e).__name__})")
        for f in files:
            self.client.log_artifact(self.run_id, str(f))
        self.client.set_terminated(self.run_id, status)
