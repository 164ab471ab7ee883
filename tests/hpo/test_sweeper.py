"""run_study end to end with a cheap objective and real SQLite stores (Optuna, MLflow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hpo_toy import RECIPE, objective, score
from optuna.trial import TrialState

from autoscope.config import compose
from autoscope.errors import UserError
from autoscope.hpo.sweeper import run_study

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _load(cfg) -> optuna.Study:
    return optuna.load_study(study_name=cfg.hpo.study_name, storage=cfg.paths.optuna_storage)


def test_failed_trial_is_recorded_and_the_study_goes_on(toy, capsys) -> None:
    cfg = toy()

    def flaky(tcfg, trial):
        if trial.number == 1:
            raise RuntimeError("out of memory\nsecond line")
        return objective(tcfg, trial)

    res = run_study(cfg, flaky)
    assert (res["n_complete"], res["n_failed"], res["n_pruned"]) == (2, 1, 0)
    trials = _load(cfg).trials
    assert len(trials) == 3 and trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["fail_reason"] == "RuntimeError: out of memory"
    sweep = Path(cfg.paths.outputs) / "hpo" / cfg.hpo.study_name
    assert "out of memory" in (sweep / "1" / "error.txt").read_text()
    for n in range(3):  # every trial has its own folder with its resolved config
        assert yaml.safe_load((sweep / str(n) / "config.yaml").read_text())["toy"]["lr"] > 0
    out = capsys.readouterr().out
    assert out.count("] 1/3 trial #0") == 1 and "trial #1 FAIL RuntimeError" in out
    assert (sweep / "history.png").stat().st_size > 1000
    assert (sweep / "importances.png").stat().st_size > 1000


def test_a_trial_whose_config_breaks_fails_with_a_reason(toy, monkeypatch) -> None:
    import autoscope.hpo.sweeper as sweeper

    real = sweeper.apply_params

    def broken(cfg, params):
        if params.get("toy") == "b":
            raise UserError("recipe 'toy': cannot compose")
        return real(cfg, params)

    monkeypatch.setattr(sweeper, "apply_params", broken)
    res = run_study(toy(["hpo.n_trials=4"]), objective)
    t = _load(toy()).trials
    assert len(t) == 4 and res["n_complete"] + res["n_failed"] == 4
    for x in t:
        assert (x.state == TrialState.FAIL) == (x.params["toy"] == "b")
        if x.state == TrialState.FAIL:
            assert x.user_attrs["fail_reason"] == "UserError: recipe 'toy': cannot compose"


def test_the_same_failure_three_times_in_a_row_stops_the_study(toy) -> None:
    def always(tcfg, trial):
        raise FileNotFoundError("dataset 'demo_tissue' is not built")

    with pytest.raises(UserError, match="3 trials in a row failed with FileNotFoundError"):
        run_study(toy(["hpo.n_trials=10"]), always)
    assert [x.state for x in _load(toy()).trials] == [TrialState.FAIL] * 3


def test_best_yaml_is_a_recipe_delta_that_composes(toy) -> None:
    cfg = toy(["hpo.n_trials=4"])
    res = run_study(cfg, objective)
    best = _load(cfg).best_trial
    assert res["best_value"] == pytest.approx(best.value) and res["best_params"] == best.params
    text = Path(res["best_yaml"]).read_text()
    assert f"val/acc = {best.value:.6g}" in text and f"trial #{best.number}" in text
    delta = yaml.safe_load(text)
    assert delta["defaults"] == [{"override toy": best.params["toy"]}]
    assert delta["toy"]["lr"] == pytest.approx(best.params["toy.lr"])
    # promote it: the base recipe plus the delta composes to the best trial's config
    base = yaml.safe_load(RECIPE)
    promoted = {
        "defaults": base["defaults"][:-1] + delta["defaults"] + ["_self_"],
        **{k: v for k, v in delta.items() if k != "defaults"},
    }
    path = Path(cfg.recipe).with_name("promoted.yaml")
    path.write_text(yaml.safe_dump(promoted))
    again = compose(str(path), [], "train")
    assert again.toy.name == best.params["toy"] and again.toy.lr == best.params["toy.lr"]
    assert score(again) == pytest.approx(best.value)


def test_keyboard_interrupt_then_resume_to_exactly_n_trials(toy) -> None:
    cfg = toy()

    def interrupted(tcfg, trial):
        if trial.number == 1:
            raise KeyboardInterrupt
        return objective(tcfg, trial)

    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, interrupted)
    res = run_study(toy(), objective)  # same command again: resumes
    assert (res["n_complete"], res["n_failed"]) == (3, 0)
    t = _load(cfg).trials
    assert [x.state for x in t] == [TrialState.COMPLETE, TrialState.FAIL] + [
        TrialState.COMPLETE
    ] * 2
    assert t[2].user_attrs["retry_of"] == 1 and t[2].params == t[1].params


SCRIPT = """
import sys, time
from pathlib import Path
from autoscope.config import compose
from autoscope.hpo.sweeper import run_study
from hpo_toy import objective

def hanging(cfg, trial):
    if trial.number == 2:
        Path("started-2").write_text("x")
        time.sleep(600)
    return objective(cfg, trial)

run_study(compose(sys.argv[1], ["multirun=true"], "train"), hanging)
"""


def test_killed_sweep_resumes_where_it_stopped(toy, tmp_path) -> None:
    cfg = toy()
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    proc = subprocess.Popen([sys.executable, str(script), cfg.recipe], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started-2").exists():
            assert proc.poll() is None, "the sweep ended before trial #2"
            assert time.monotonic() < deadline, "trial #2 never started"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t = _load(cfg).trials
    assert [x.state for x in t] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    res = run_study(toy(), objective)
    t = _load(cfg).trials
    assert res["n_complete"] == 3 and res["n_failed"] == 0
    assert [x.state for x in t] == [TrialState.COMPLETE] * 2 + [
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert t[3].params == t[2].params and t[3].user_attrs["retry_of"] == 2
    assert Path(res["best_yaml"]).is_file()
    res = run_study(toy(), objective)  # a finished study runs nothing more
    assert len(_load(cfg).trials) == 4 and res["n_complete"] == 3


def test_pruned_trials_count(toy) -> None:
    def pruning(tcfg, trial):
        trial.report(score(tcfg), step=0)
        if trial.number > 0:
            raise optuna.TrialPruned()
        return objective(tcfg, trial)

    res = run_study(toy(), pruning)
    assert (res["n_complete"], res["n_pruned"], res["n_failed"]) == (1, 2, 0)
    sweep = Path(res["best_yaml"]).parent  # one completed trial: best.yaml but no importances
    assert (sweep / "history.png").is_file() and not (sweep / "importances.png").exists()


def test_time_budget_stops_the_study(toy) -> None:
    def slow(tcfg, trial):
        time.sleep(0.6)
        return objective(tcfg, trial)

    res = run_study(toy(["hpo.n_trials=null", "hpo.timeout_s=1"]), slow)
    assert 1 <= res["n_complete"] <= 2


def test_objective_without_the_metric_fails_its_trial(toy) -> None:
    res = run_study(toy(["hpo.n_trials=1"]), lambda c, t: {"val/loss": 0.3})
    assert res["n_failed"] == 1 and res["best_yaml"] is None
    reason = _load(toy()).trials[0].user_attrs["fail_reason"]
    assert "no finite 'val/acc'" in reason


def test_unknown_param_key_is_a_user_error_before_any_trial(toy) -> None:
    from omegaconf import open_dict

    cfg = toy()
    with open_dict(cfg):
        cfg.hpo.params["toy.lrr"] = {"type": "float", "low": 0.1, "high": 1.0}
    with pytest.raises(UserError, match=r"hpo.params\['toy.lrr'\]: no such key"):
        run_study(cfg, objective)
    assert not Path(cfg.paths.outputs, "hpo").exists()


@pytest.mark.parametrize(
    ("override", "msg"),
    [
        ("hpo.fixed={trainer.nope:1}", r"hpo.fixed\['trainer.nope'\]: no such key"),
        ("hpo.n_trials=null", "n_trials or timeout_s"),
        ("metric_mode=best", "metric_mode"),
    ],
)
def test_bad_space_is_a_user_error_before_any_trial(toy, override: str, msg: str) -> None:
    cfg = toy([override])
    with pytest.raises(UserError, match=msg):
        run_study(cfg, objective)
    assert not Path(cfg.paths.outputs, "hpo").exists()


def test_no_space_selected_is_a_user_error(toy) -> None:
    with pytest.raises(UserError, match="hpo=<space>"):
        run_study(toy(["hpo=none"]), objective)


def test_mlflow_parent_run_with_nested_trials_and_pictures(toy) -> None:
    import mlflow

    cfg = toy(["hpo.mlflow=true", "hpo.n_trials=2"])
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)

    def tracked(tcfg, trial):
        exp = client.get_experiment_by_name(tcfg.project.name)
        run = client.create_run(exp.experiment_id, run_name=f"trial-{trial.number}")
        client.log_metric(run.info.run_id, "val/acc", score(tcfg))
        client.set_terminated(run.info.run_id)
        return {"val/acc": score(tcfg), "run_id": run.info.run_id}

    res = run_study(cfg, tracked)
    parent_id = _load(cfg).user_attrs["mlflow_parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.data.tags["autoscope.kind"] == "hpo_study" and parent.info.status == "FINISHED"
    assert parent.data.metrics["hpo/best_value"] == pytest.approx(res["best_value"])
    assert "val/acc" not in parent.data.metrics  # never mistaken for a model run
    assert parent.data.tags["best.run_id"] == res["best_run_id"]
    arts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"best.yaml", "history.png", "importances.png"} <= arts
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert len(children) == 2


WORKER = """
import sys, time
from autoscope.config import compose
from autoscope.hpo.sweeper import run_study
from hpo_toy import objective

def slow(cfg, trial):
    time.sleep(1.0)
    return objective(cfg, trial)

run_study(compose(sys.argv[1], ["multirun=true", "hpo.n_trials=6"], "train"), slow)
"""


@pytest.mark.slow
def test_two_workers_share_one_study(toy, tmp_path) -> None:
    cfg = toy(["hpo.n_trials=6"])
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    procs = [
        subprocess.Popen([sys.executable, str(script), cfg.recipe], cwd=tmp_path, env=env)
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    t = _load(cfg).trials
    assert all(x.state == TrialState.COMPLETE for x in t)
    assert 6 <= len(t) <= 7  # a worker that starts while the other finishes may add one
    assert len({x.user_attrs["worker"] for x in t}) == 2


def test_unreachable_storage_is_a_user_error_without_the_password(toy) -> None:
    cfg = toy(["hpo.storage=postgresql://u:secret@127.0.0.1:1/optuna"])
    with pytest.raises(UserError, match=r"u:\*\*\*@127.0.0.1:1/optuna': cannot open") as e:
        run_study(cfg, objective)
    assert "secret" not in str(e.value)


def test_fixed_overrides_reach_every_trial(toy) -> None:
    cfg = toy(["hpo.n_trials=2", "hpo.fixed={seed:3,toy:{max_lr:9.0}}"])

    def check(tcfg, trial):
        assert tcfg.seed == 3 and tcfg.toy.max_lr == 9.0
        return score(tcfg)

    assert run_study(cfg, check)["n_complete"] == 2


def test_relative_sqlite_storage_lives_under_the_working_folder(toy, tmp_path) -> None:
    cfg = toy(["hpo.n_trials=1", "hpo.storage=sqlite:///outputs/demo/hpo/pipeline.db"])
    assert run_study(cfg, objective)["n_complete"] == 1
    assert (tmp_path / "outputs/demo/hpo/pipeline.db").is_file()
