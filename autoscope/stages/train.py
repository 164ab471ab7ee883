"""`autoscope train`: one tracked training run, or (`-m`) an Optuna study over the hpo space."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def run(cfg: Any) -> dict:
    """Train once. A job launched by the Optuna sweeper (`hpo.trial` set) reports to its trial.

    In a launcher's worker process (joblib) the job dies with the sweep that started it.
    """
    import multiprocessing as mp

    if mp.parent_process() is not None:  # a pool worker: a killed sweep leaves no trial behind
        from autoscope.procs import die_with_parent

        die_with_parent(mp.parent_process().pid, kernel=False)  # loky starts from threads
    trial = None
    if cfg.get("hpo") and cfg.hpo.get("trial") is not None:
        from hydra.utils import instantiate

        from autoscope.hpo.sweeper import study_spec
        from autoscope.hpo.trial import attach

        pruner = instantiate(cfg.hpo.pruner) if cfg.hpo.get("pruner") else None
        trial = attach(study_spec(cfg), int(cfg.hpo.trial), pruner, metric=str(cfg.metric))
    result = train_once(cfg, trial)
    _record_job(cfg, str(result["run_id"]))
    return result


def _record_job(cfg: Any, run_id: str) -> None:
    """Keep the Hydra job's record (config, overrides, choices) with the training run.

    Copied into the run folder (`outputs/<project>/train/runs/<run_id>/.hydra`) and, with the
    MLflow logger, logged as the run's `hydra/` artefacts with a `hydra.run_dir` tag.
    """
    import shutil

    from hydra.core.hydra_config import HydraConfig

    from autoscope.config import stores_spec

    try:
        job_dir = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # composed directly (tests, the Studio): no Hydra job
        return
    hydra_dir = job_dir / ".hydra"
    if job_dir.is_dir():  # the job's run: `archive.choice_dir=<job dir>` archives exactly it
        import json

        from autoscope.atomic import write_text

        write_text(job_dir / "run.json", json.dumps({"run_id": run_id}) + "\n")
    run_dir = stores_spec(cfg).outputs / "train" / "runs" / run_id
    if not hydra_dir.is_dir() or not run_dir.is_dir():
        return
    shutil.copytree(hydra_dir, run_dir / ".hydra", dirs_exist_ok=True)
    uri = cfg.logger.get("tracking_uri")
    if uri:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=str(uri))
        client.log_artifacts(run_id, str(hydra_dir), "hydra")
        client.set_tag(run_id, "hydra.run_dir", str(job_dir))


def _tags(cfg: Any, ddir: Path) -> dict[str, str]:
    from autoscope.config import ROOT
    from autoscope.models.build import dataset_version
    from autoscope.models.tracking import code_version, owner_tags, source_tags

    tags = {
        **source_tags(str(cfg.paths.workspace), _entry_point()),
        "project": str(cfg.project.name),
        "dataset_name": str(cfg.dataset.name),
        "dataset_version": dataset_version(ddir),
        "code_version": code_version(ROOT),
        "model": str(cfg.model.name),
        "fit_on": str(cfg.trainer.get("fit_on") or "train"),  # train+val: a final refit
    }
    tags.update({str(k): str(v) for k, v in (cfg.logger.get("tags") or {}).items()})
    tags.update(owner_tags())  # this process: a run it leaves RUNNING when killed gets reaped
    return tags


def _entry_point() -> str:
    """What ran the training: `autoscope train <recipe>` in a Hydra job, else this module."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return f"autoscope train {HydraConfig.get().job.config_name}"
    except ValueError:  # composed directly (tests, the Studio, the sweep's retrain)
        return "autoscope.stages.train"


def refits(cfg: Any) -> bool:
    """Whether this run fits on train+val (a final refit): no early stop, the last weights kept."""
    return "val" in str(cfg.trainer.get("fit_on") or "train")


def _callbacks(cfg: Any, trial: Any) -> list:
    """`trainer.callbacks` (each `_target_`; a null entry is dropped) plus the pruning callback.

    Early stopping runs only with a `trainer.patience`; a refit on train+val drops it too (its
    validation is no longer held out).
    """
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import EarlyStopping

    nodes = (cfg.trainer.get("callbacks") or {}).values()
    off = cfg.trainer.get("patience") is None  # trainer.patience=null: no early stopping
    callbacks = [
        instantiate(n, _convert_="all")
        for n in nodes
        if n and n.get("_target_") and not (off and str(n._target_).endswith(".EarlyStopping"))
    ]
    if refits(cfg):
        callbacks = [c for c in callbacks if not isinstance(c, EarlyStopping)]
    if trial is not None:
        from optuna_integration import PyTorchLightningPruningCallback

        callbacks.append(PyTorchLightningPruningCallback(trial, monitor=cfg.metric))
    return callbacks


def _logger(cfg: Any, run_name: str, tags: dict[str, str]) -> Any:
    """The Lightning logger of `logger.lightning`; an MLflow store gets the experiment first."""
    from dataclasses import replace

    from hydra.utils import instantiate

    from autoscope.config import project_spec, stores_spec
    from autoscope.project import ensure_experiment

    if cfg.logger.get("tracking_uri"):  # the project's experiment (its tags) in that store
        import mlflow

        from autoscope.models.tracking import reap_dead_runs

        stores = replace(stores_spec(cfg), mlflow_uri=str(cfg.logger.tracking_uri))
        exp_id = ensure_experiment(project_spec(cfg), stores)
        client = mlflow.MlflowClient(tracking_uri=stores.mlflow_uri)
        reap_dead_runs(client, exp_id)  # runs left RUNNING by killed trainings end KILLED
    return instantiate(cfg.logger.lightning, _convert_="all")(run_name=run_name, tags=tags)


def _data_module(cfg: Any, kit: Any, ddir: Path, num_classes: int) -> Any:
    """The family's LightningDataModule with the `trainer.data` keys (its own class if any)."""
    from hydra.utils import instantiate

    from autoscope.config import to_dict

    if kit.data_module is None:  # classification: trainer.data._target_ as configured
        make = instantiate(cfg.trainer.data, _convert_="all")
        return make(dataset_dir=ddir, num_classes=num_classes)
    keys = {k: v for k, v in to_dict(cfg.trainer.data).items() if not k.startswith("_")}
    return kit.get("data_module")(dataset_dir=ddir, num_classes=num_classes, **keys)


def train_once(cfg: Any, trial: Any = None) -> dict:
    """Fit, pick the best checkpoint, test, and record everything through the run's logger.

    Args:
        cfg: the composed recipe.
        trial: an Optuna trial when called by the sweeper (reports `cfg.metric` for pruning).

    Returns:
        final metrics (`val/...` of the best checkpoint, `test/...`) plus `run_id`: the MLflow
        run id (`logger=mlflow`), or the run name for a logger without MLflow (`logger=csv`);
        either way the run folder is `<paths.outputs>/train/runs/<run_id>`.
    """
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from autoscope.atomic import write_text
    from autoscope.config import project_spec, stores_spec, to_dict
    from autoscope.models import build, tracking
    from autoscope.models.artifacts import save_model
    from autoscope.models.evaluate import final_evaluation, warn_few_val_groups
    from autoscope.tasks import entry

    project, stores = project_spec(cfg), stores_spec(cfg)
    kit = entry(project.task, "kit")  # the family's model, data, module, spec and test report
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for the fp32 parts on GPUs
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    ddir = build.dataset_dir(stores, cfg.dataset.get("name"))
    names = project.class_names
    arch = to_dict(cfg.model)
    model = kit.get("build_model")(arch, len(names), stores)  # before the data: fail fast
    dm = _data_module(cfg, kit, ddir, len(names))
    dm.setup()
    if trial is None or trial.number == 0:
        warn_few_val_groups(ddir, cfg.trainer.get("min_val_groups"))
    m = cfg.model
    module = kit.get("build_module")(
        model,
        loss=instantiate(m.loss, _convert_="all"),
        optimizer=instantiate(m.optimizer, _convert_="all"),
        scheduler=instantiate(m.scheduler, _convert_="all") if m.get("scheduler") else None,
        class_counts=dm.class_counts(),
        tta=bool(cfg.trainer.tta),
    )
    run_name = cfg.logger.get("run_name") or (
        f"{cfg.model.name}-{cfg.dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        + (f"-t{trial.number}" if trial is not None else "")
    )
    tags = _tags(cfg, ddir)
    logger = _logger(cfg, run_name, tags)
    run_id = tracking.run_id(logger)
    if trial is not None:  # lets the sweep nest pruned and failed trial runs under its study too
        trial.set_user_attr("run_id", run_id)
    run_dir = stores.outputs / "train" / "runs" / run_id
    status = "FAILED"
    try:
        if cfg.logger.log_params:
            tracking.log_params(logger, tracking.flatten(to_dict(cfg)))
        dataset = (str(cfg.dataset.name), tags["dataset_version"])
        tracking.log_dataset(logger, ddir / "manifest.parquet", *dataset)
        make_trainer = instantiate(cfg.trainer.lightning, _convert_="all")
        trainer = make_trainer(
            ckpt_dir=run_dir / "checkpoints", logger=logger, callbacks=_callbacks(cfg, trial)
        )
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        fit_s = time.perf_counter() - t0
        val, test, kept_step = final_evaluation(trainer, module, dm, keep_last=refits(cfg))
        has_test = bool(test)
        seen = trainer.global_step * int(cfg.trainer.batch_size)
        metrics = {**val, **test, "fit_seconds": fit_s, "train_patches_per_s": seen / fit_s}
        metrics["epochs"] = float(trainer.current_epoch)
        metrics["val_held_out"] = 0.0 if refits(cfg) else 1.0  # a refit saw val in training
        mpp = build.dataset_mpp(ddir, dm.patch_px, project.target_mpp)
        spec = kit.get("make_spec")(arch, project.classes, mpp, dm.patch_px)
        files = list(save_model(run_dir, model, spec))
        files.append(write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True)))
        if cfg.logger.log_pictures and has_test:
            per_class, pics = kit.get("test_report")(
                module,
                dm.splits["test"],
                names,
                run_dir,
                int(cfg.trainer.sample_grid),
                int(cfg.seed),
            )
            tracking.log_metrics(logger, per_class, step=trainer.global_step)
            files += pics
        # `val/*` stay the per-epoch curves; the kept weights' figures go to `kept/val/*`
        tracking.log_kept(logger, metrics, kept_step, step=trainer.global_step)
        tracking.log_artifacts(logger, files)
        status = "FINISHED"
    except BaseException as e:
        status = "KILLED" if type(e).__name__ in ("TrialPruned", "KeyboardInterrupt") else "FAILED"
        raise
    finally:
        tracking.finish(logger, status)
    return {**{k: float(v) for k, v in metrics.items()}, "run_id": run_id}
