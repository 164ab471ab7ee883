"""Budget-first sweeps: exploration inside its share, the winner retrained in what is left.

The budget rule (`autoscope.hpo.budget`) alone, then end to end on the toy stage: its jobs
"train" by sleeping for their cap (`toy.minutes`, the sweep's `minutes_key`), so the wall time
of a sweep is the budget's to keep.
"""

from __future__ import annotations

import json
import time

import pytest
from omegaconf import OmegaConf

from autoscope.errors import UserError
from autoscope.hpo.budget import Budget

STUDY = "toy-42"


def _budget(**kw) -> Budget:
    hpo = {"budget_minutes": 1.0, "explore_share": 0.5, "trial_minutes": 0.2,
           "min_trial_minutes": 0.05, **kw}  # fmt: skip
    b = Budget.from_hpo(OmegaConf.create(hpo))
    assert b is not None
    return b


def test_trials_shrink_to_fit_the_exploration_share_then_stop() -> None:
    b = _budget()
    assert b.trial_minutes() == 0.2  # the full cap while room is left
    b.spent_s = 20.0  # 10 s of the 30 s share left
    assert 0.1 < b.trial_minutes() <= 10 / 60 + 1e-9
    b.spent_s = 28.0  # 2 s left < min_trial_minutes (3 s): no new trial
    assert b.trial_minutes() is None
    assert 0.4 < b.retrain_minutes() <= 32 / 60  # the retrain gets the rest
    b.spent_s = 61.0
    assert b.retrain_minutes() is None


def test_measured_overhead_is_kept_out_of_the_caps() -> None:
    b = _budget()
    b.observe(wall_s=9.0, fit_s=6.0, cap_s=12.0)  # 3 s of start-up, loading and test
    assert b.overhead_s == pytest.approx(3.0)
    assert b.trial_minutes() == 0.2
    b.spent_s = 20.0  # 10 s left, 3 of them overhead
    assert b.trial_minutes() == pytest.approx(7 / 60, abs=0.01)
    b.observe(wall_s=5.0, fit_s=None, cap_s=4.0)  # no fit_seconds: the cap counts as training
    assert b.overhead_s == pytest.approx(3.0)  # the recent worst


@pytest.mark.parametrize(
    "kw, msg",
    [({"explore_share": 0.0}, "explore_share"), ({"min_trial_minutes": 1.0}, "exceeds"),
     ({"budget_minutes": -1}, "budget")],
)  # fmt: skip
def test_bad_budgets_are_user_errors(kw, msg) -> None:
    with pytest.raises(UserError, match=msg):
        _budget(**kw)


def test_no_budget_means_no_budget() -> None:
    assert Budget.from_hpo(OmegaConf.create({"n_trials": 3})) is None


BUDGET = [
    "hpo.n_trials=null",
    "+hpo.budget_minutes=0.75",  # 45 s (set-up included): 60 % exploration, the rest retrains
    "+hpo.explore_share=0.6",
    "+hpo.trial_minutes=0.03",  # 1.8 s per trial
    "+hpo.min_trial_minutes=0.01",  # no trial starts with under 0.6 s left
    "+hpo.minutes_key=toy.minutes",
    "+hpo.retrain.overrides.toy.refit=true",
    "toy.sleep_s=100",  # every job sleeps its whole cap
]


def test_budgeted_sweep_keeps_its_budget_and_retrains_the_winner(toy, capsys) -> None:
    t0 = time.monotonic()
    assert toy(*BUDGET) == 0
    wall = time.monotonic() - t0
    res = json.loads((toy.root / "outputs/demo/hpo" / STUDY / "study.json").read_text())
    out = capsys.readouterr().out
    assert res["n_complete"] >= 1, out
    # the whole sweep ends within its budget plus one trial's minimum resource (and start-up)
    assert res["budget"]["minutes_used"] <= 0.75 + 0.01 + 0.01, res["budget"]
    assert wall < 45 + 25, wall  # plus Hydra's start before the sweeper (slow on a busy CPU)
    final = res["final"]
    assert final and final["trial"] == res["best_trial"]
    assert "toy.refit=true" in final["overrides"]
    assert any(o.startswith("toy.minutes=") for o in final["overrides"])
    cap = next(o for o in final["overrides"] if o.startswith("toy.minutes="))
    retrain_cap = float(cap.split("=")[1])
    assert retrain_cap > 0.03  # the retrain got the rest of the budget, more than a trial's cap
    assert final["val/acc"] == pytest.approx(res["best_value"] + 0.01)  # the refit job ran
    assert res["val_test_gap"] == pytest.approx(0.02)  # best trial: val minus its test/acc
    assert "retraining the winner" in out and "final model:" in out
    best_yaml = (toy.root / "outputs/demo/hpo" / STUDY / "best.yaml").read_text()
    assert "val-test gap" in best_yaml and "final_run_id" in best_yaml


def test_a_minimum_trial_above_the_trial_cap_is_refused_before_any_trial(toy, capsys) -> None:
    args = [
        a if not a.startswith("+hpo.min_trial") else "+hpo.min_trial_minutes=0.5" for a in BUDGET
    ]
    assert toy(*args) == 2
    err = capsys.readouterr().err
    assert "exceeds" in err and len(err.strip().splitlines()) == 1
    assert not (toy.root / "outputs/demo/hpo" / STUDY / "study.json").exists()
