"""What a finished sweep leaves behind: `best.yaml` (a recipe delta) and the study's pictures."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from autoscope.atomic import atomic_file, write_text
from autoscope.hpo.space import to_overrides


def best_delta(params: dict[str, Any], groups: set[str]) -> dict[str, Any]:
    """The best params as a recipe delta: group choices as `override` defaults, keys nested."""
    delta: dict[str, Any] = {}
    for k, v in params.items():
        if k in groups:
            continue
        node = delta
        *parents, leaf = k.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = v
    chosen = [{f"override {k}": v} for k, v in params.items() if k in groups]
    return {"defaults": chosen, **delta} if chosen else delta


def write_best_yaml(
    path: Path,
    study: Any,
    *,
    metric: str,
    recipe: str,
    groups: set[str],
    counts: Any,
    run_id: str | None,
    fixed: list[str],
    final: dict | None = None,
    gap: float | None = None,
) -> Path:
    """Write the best trial of `study` as a commented, Hydra-ready recipe delta at `path`.

    Args:
        path: where best.yaml goes.
        study: the Optuna study (its best trial is written).
        metric: the metric the study optimises (for the header).
        recipe: the recipe the sweep ran (for the "try it" command line).
        groups: which searched keys are config groups (`model`), written as `override` defaults.
        counts: the study's trial accounting (`complete`, `pruned`, `failed`).
        run_id: the best trial's MLflow run.
        fixed: the overrides every trial got (the sweep's per-trial budget), for the header.
        final: the winner's retrain (`run_id`, `minutes`, `overrides`, metrics), if one ran.
        gap: the best trial's validation minus held-out test value.
    """
    import yaml

    best = study.best_trial
    cli = " ".join(to_overrides(dict(best.params), groups))
    head = [
        f"# Best hyperparameters of Optuna study '{study.study_name}' for recipe '{recipe}'.",
        f"# {metric} = {best.value:.6g} ({study.direction.name.lower()}) at trial "
        f"#{best.number}; {counts.complete} complete, {counts.pruned} pruned, "
        f"{counts.failed} failed" + (f"; MLflow run {run_id}" if run_id else "") + ".",
        "# Promote by hand: merge into a recipe (`override` lines go into its defaults list),",
        f"# or try it first: autoscope train {recipe} {cli}",
        *([f"# (trials ran with the sweep's budget: {' '.join(fixed)})"] if fixed else []),
        *(
            [f"# Selection check: val-test gap of trial #{best.number} = {gap:+.4f}."]
            if gap is not None
            else []
        ),
        *(_final_lines(final) if final else []),
    ]
    body = yaml.safe_dump(best_delta(dict(best.params), groups), sort_keys=False)
    return write_text(path, "\n".join(head) + "\n" + body)


def _final_lines(final: dict) -> list[str]:
    """best.yaml's header lines naming the final model (the winner retrained)."""
    shown = {k: v for k, v in final.items() if k.startswith("test/") or k.startswith("val/")}
    figures = ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items()) if isinstance(v, float))
    return [
        f"# Final model: the winner retrained for {final.get('minutes')} min "
        f"({' '.join(final.get('overrides', []))}): MLflow run {final.get('run_id')}"
        + (f"; {figures}" if figures else "")
        + ".",
        f"# final_run_id: {final.get('run_id')}",
    ]


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
                with atomic_file(out_dir / name) as tmp:
                    fig.savefig(tmp, dpi=100, format="png")
                plt.close(fig)
                written.append(out_dir / name)
            except Exception as e:  # a picture must never sink a finished sweep
                notes.append(f"{name} skipped: {type(e).__name__}: {e}")
    return written, notes
