"""What a finished sweep leaves behind: `best.yaml` (a recipe delta) and the study's pictures."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from autoscope.hpo.apply import is_group, to_overrides


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temp file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def best_delta(cfg: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The best params as a recipe delta: group choices as `override` defaults, keys nested."""
    from omegaconf import OmegaConf

    delta = OmegaConf.create({})
    groups = [{f"override {k}": v} for k, v in params.items() if is_group(cfg, k)]
    for k, v in params.items():
        if not is_group(cfg, k):
            OmegaConf.update(delta, k, v, force_add=True)
    out = OmegaConf.to_container(delta)
    return {"defaults": groups, **out} if groups else out


def write_best_yaml(cfg: Any, study: Any, path: Path, counts: Any, run_id: str | None) -> Path:
    """Write the best trial of `study` as a commented, Hydra-ready recipe delta at `path`."""
    from omegaconf import OmegaConf

    best = study.best_trial
    recipe = cfg.get("recipe") or "<recipe>"
    fixed = cfg.hpo.get("fixed") if cfg.get("hpo") else None
    cli = " ".join(to_overrides(cfg, best.params))
    head = [
        f"# Best hyperparameters of Optuna study '{study.study_name}' for recipe '{recipe}'.",
        f"# {cfg.metric} = {best.value:.6g} ({study.direction.name.lower()}) at trial "
        f"#{best.number}; {counts.complete} complete, {counts.pruned} pruned, "
        f"{counts.failed} failed" + (f"; MLflow run {run_id}" if run_id else "") + ".",
        "# Promote by hand: merge into a recipe (`override` lines go into its defaults list),",
        f"# or try it first: autoscope train {recipe} {cli}",
        *(
            [f"# (trials ran with the sweep's budget: {' '.join(to_overrides(cfg, dict(fixed)))})"]
            if fixed
            else []
        ),
    ]
    body = OmegaConf.to_yaml(OmegaConf.create(best_delta(cfg, best.params)))
    return write_atomic(path, "\n".join(head) + "\n" + body)


def save_plots(study: Any, out_dir: Path, metric: str) -> tuple[list[Path], list[str]]:
    """Save the optimisation history and parameter importances as PNGs.

    Returns the written paths and a note for each picture that could not be drawn (importances
    need at least two completed trials and a parameter that varied).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = {k for t in done for k in t.params if len({str(u.params.get(k)) for u in done}) > 1}
    jobs = {"history.png": lambda: ovm.plot_optimization_history(study, target_name=metric)}
    notes = []
    if len(done) >= 2 and varied:
        jobs["importances.png"] = lambda: ovm.plot_param_importances(study, target_name=metric)
    else:
        notes.append(f"importances skipped: {len(done)} completed trial(s), need >= 2 that differ")
    written = []
    for name, plot in jobs.items():
        if name == "history.png" and not done:
            notes.append("history skipped: no completed trial")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # "few trials per regime": we know
            try:
                ax = plot()
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.set_size_inches(8, 5)
                fig.tight_layout()
                tmp = out_dir / f".{name}.tmp.png"
                fig.savefig(tmp, dpi=100)
                plt.close(fig)
                os.replace(tmp, out_dir / name)
                written.append(out_dir / name)
            except Exception as e:  # a picture must never sink a finished sweep
                notes.append(f"{name} skipped: {type(e).__name__}: {e}")
    return written, notes
