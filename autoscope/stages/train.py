"""`autoscope train`: one tracked training run, or (`-m`) an Optuna study over the hpo space."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def run(cfg: Any) -> dict:
    """Train once, or run the hpo study with `train_once` as its objective when `cfg.multirun`."""
    if cfg.get("multirun"):
        from autoscope.hpo.sweeper import run_study

        return run_study(cfg, train_once)
    return train_once(cfg)


def _tags(cfg: Any, ddir: Path) -> dict[str, str]:
    from autoscope.config import ROOT
    from autoscope.models.build import dataset_version
    from autoscope.models.tracking import code_version

    tags = {
        "project": str(cfg.project.name),
        "dataset_name": str(cfg.dataset.name),
        "dataset_version": dataset_version(ddir),
        "code_version": code_version(ROOT),
        "model": str(cfg.model.name),
        "recipe": str(cfg.get("recipe")),
    }
    tags.update({str(k): str(v) for k, v in (cfg.logger.get("tags") or {}).items()})
    return tags


def train_once(cfg: Any, trial: Any = None) -> dict:
    """Fit, pick the best checkpoint, test, and record everything in MLflow.

    Args:
        cfg: the composed recipe.
        trial: an Optuna trial when called by the sweeper (reports `cfg.metric` for pruning).

    Returns:
        final metrics (`val/...` of the best checkpoint, `test/...`) plus `run_id`.
    """
    import lightning as L
    import torch
    from lightning.pytorch.loggers import MLFlowLogger

    from autoscope.models import artifacts, build, tracking
    from autoscope.models.classifier import make_spec
    from autoscope.models.data import PatchDataModule

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for the fp32 parts on GPUs
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    ddir = build.dataset_dir(cfg)
    names = [str(c.name) for c in cfg.project.classes]
    model = build.build_classifier(cfg, len(names))  # before loading data: bad weights fail fast
    dm = PatchDataModule(
        ddir,
        batch_size=int(cfg.trainer.batch_size),
        eval_batch_size=int(cfg.trainer.eval_batch_size),
        input_px=cfg.model.get("input_px"),
        seed=int(cfg.seed),
        augment=cfg.trainer.augment,
        mean=cfg.model.mean,
        std=cfg.model.std,
        num_classes=len(names),
    )
    dm.setup()
    module = build.build_module(cfg, model, dm.class_counts())
    run_name = cfg.logger.get("run_name") or (
        f"{cfg.model.name}-{cfg.dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        + (f"-t{trial.number}" if trial is not None else "")
    )
    client, run_id = tracking.start_run(cfg, run_name, _tags(cfg, ddir))
    if trial is not None:  # lets the sweep nest pruned and failed trial runs under its study too
        trial.set_user_attr("run_id", run_id)
    run_dir = Path(cfg.paths.outputs) / "train" / "runs" / run_id
    status = "FAILED"
    try:
        if cfg.logger.log_params:
            tracking.log_params(client, run_id, tracking.flatten(cfg))
        logger = MLFlowLogger(
            experiment_name=str(cfg.project.name), tracking_uri=cfg.paths.mlflow_uri, run_id=run_id
        )
        callbacks = []
        if trial is not None:
            from optuna_integration import PyTorchLightningPruningCallback

            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=cfg.metric))
        trainer = build.build_trainer(cfg, logger, run_dir / "checkpoints", callbacks)
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        fit_s = time.perf_counter() - t0
        best = trainer.checkpoint_callback.best_model_path
        if best:
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
        val = trainer.validate(module, datamodule=dm, verbose=False)[0]
        has_test = len(dm.splits["test"][1]) > 0  # a dataset without a test split still trains
        test = trainer.test(module, datamodule=dm, verbose=False)[0] if has_test else {}
        seen = trainer.global_step * int(cfg.trainer.batch_size)
        metrics = {**val, **test, "fit_seconds": fit_s, "train_patches_per_s": seen / fit_s}
        metrics["epochs"] = float(trainer.current_epoch)
        mpp = build.dataset_mpp(ddir, dm.patch_px, cfg.project.get("target_mpp"))
        spec = make_spec(cfg.model, list(cfg.project.classes), mpp, dm.patch_px)
        files = list(artifacts.save_model(run_dir, model, spec))
        if cfg.logger.log_pictures and has_test:
            per_class, pics = artifacts.test_report(
                module,
                dm.splits["test"][0],
                names,
                run_dir,
                int(cfg.trainer.sample_grid),
                int(cfg.seed),
            )
            tracking.log_metrics(client, run_id, per_class, step=trainer.global_step)
            files += pics
        tracking.log_metrics(client, run_id, metrics, step=trainer.global_step)
        for f in files:
            client.log_artifact(run_id, str(f))
        status = "FINISHED"
    except BaseException as e:
        status = "KILLED" if type(e).__name__ in ("TrialPruned", "KeyboardInterrupt") else "FAILED"
        raise
    finally:
        client.set_terminated(run_id, status)
    return {**{k: float(v) for k, v in metrics.items()}, "run_id": run_id}
