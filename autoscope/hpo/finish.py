"""The end of a sweep: the winner's retrain on train+val and the study's record (best.yaml, plots).

Like `autoscope.hpo.trials`, this module knows Optuna, not Hydra: the sweeper hands it its launcher.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autoscope.atomic import write_json
from autoscope.hpo.report import save_plots, write_best_yaml
from autoscope.hpo.space import to_overrides
from autoscope.hpo.study import counts
from autoscope.hpo.trials import log, test_key, val_test_gap


def finish_study(
    study: Any, sweep_dir: Path, tracker: Any, *, metric: str, groups: set[str], fixed: list[str],
    recipe: str, final: dict | None = None, budget: dict | None = None,
) -> dict:  # fmt: skip
    """Write best.yaml and the pictures, close the MLflow parent run, build the result.

    `final` is the winner's retrain (`run_id`, `minutes`, its metrics), `budget` the time
    accounting of a budgeted sweep; both go into best.yaml's header and study.json.
    """
    c = counts(study)
    result: dict[str, Any] = {
        "best_value": None,
        "best_params": None,
        "best_run_id": None,
        "n_complete": c.complete,
        "n_pruned": c.pruned,
        "n_failed": c.failed,
        "study_name": study.study_name,
        "best_yaml": None,
        "best_trial": None,
        "best_test_value": None,
        "val_test_gap": None,
        "final": final,
        "final_run_id": (final or {}).get("run_id"),
        "budget": budget,
    }
    name = study.study_name
    if c.complete:
        best = study.best_trial
        result.update(
            best_value=best.value,
            best_params=dict(best.params),
            best_run_id=best.user_attrs.get("run_id"),
            best_trial=best.number,
            best_test_value=best.user_attrs.get("test_value"),
            val_test_gap=val_test_gap(best),
        )
        path = write_best_yaml(
            sweep_dir / "best.yaml", study, metric=metric, recipe=recipe, groups=groups,
            counts=c, run_id=result["best_run_id"], fixed=fixed, final=final,
            gap=result["val_test_gap"],
        )  # fmt: skip
        result["best_yaml"] = str(path)
        log(
            name,
            f"best {metric}={best.value:.4f} at trial #{best.number} "
            f"(run {result['best_run_id']}): {path}",
        )
        if result["val_test_gap"] is not None:
            log(
                name,
                f"selection check: trial #{best.number} {metric}={best.value:.4f}, held-out "
                f"{test_key(metric)}={result['best_test_value']:.4f}, "
                f"val-test gap {result['val_test_gap']:+.4f}",
            )
    else:
        log(name, "no trial completed: no best.yaml written")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    pictures, notes = save_plots(study, sweep_dir, metric)
    for note in notes + (tracker.notes if tracker else []):
        log(name, note)
    if tracker is not None:
        files = pictures + ([Path(result["best_yaml"])] if result["best_yaml"] else [])
        tracker.finish(result, files)
    write_json(sweep_dir / "study.json", result)
    return result


def retrain(
    study: Any, bud: Any, plain: list[str], groups: set[str], extra: dict[str, Any], *,
    launch: Any, metric: str,
) -> dict | None:  # fmt: skip
    """The final share of the budget: the winner's configuration trained once more.

    The job gets the sweep's plain overrides, the best trial's parameters, `hpo.retrain.
    overrides` (a `{run_id}` in a value is the best trial's run) and what is left of the
    budget as its training cap; it is no Optuna trial. A study resumed after its retrain ran
    keeps the earlier one (`final` study attr) unless the best trial changed.
    """
    name, best = study.study_name, study.best_trial
    done = study.user_attrs.get("final") or {}
    if done.get("trial") == best.number and done.get("run_id"):
        log(name, f"retrain of trial #{best.number} already done: run {done['run_id']}")
        return done
    minutes = bud.retrain_minutes()
    if minutes is None:
        log(name, "no budget left to retrain the winner: the best trial is the final model")
        return None
    run_id = str(best.user_attrs.get("run_id") or "")
    extra = {k: (v.format(run_id=run_id) if isinstance(v, str) else v) for k, v in extra.items()}
    overrides = [
        *plain,
        *to_overrides(dict(best.params), groups),
        *to_overrides(extra),
        f"{bud.minutes_key}={minutes}",
    ]
    shown = " ".join(o for o in overrides if o not in plain)
    log(name, f"retraining the winner (trial #{best.number}) for {minutes:g} min: {shown}")
    t0 = time.monotonic()
    ret = launch([overrides])[0]
    wall = time.monotonic() - t0
    if ret.status.name != "COMPLETED":
        exc = ret._return_value
        log(
            name,
            f"retrain failed ({type(exc).__name__}: {str(exc).strip()[:300]}): "
            "the best trial stays the final model",
        )
        return None
    metrics = ret.return_value if isinstance(ret.return_value, dict) else {}
    final = {
        "trial": best.number,
        "run_id": metrics.get("run_id"),
        "minutes": minutes,
        "wall_seconds": round(wall, 1),
        "overrides": [o for o in overrides if o not in plain],
        **{
            k: float(v) for k, v in metrics.items() if k != "run_id" and isinstance(v, (int, float))
        },
    }
    study.set_user_attr("final", final)
    tk = "test/" + metric.split("/", 1)[-1]
    shown_test = f", {tk}={final[tk]:.4f}" if tk in final else ""
    log(name, f"final model: run {final['run_id']} in {wall:.0f}s{shown_test}")
    return final
