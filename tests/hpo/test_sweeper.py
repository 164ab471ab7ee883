"""The Optuna sweeper end to end: a real Hydra app (the toy stage), real SQLite stores.

Every sweep here is `autoscope <stage> <recipe> -m ...` as a user types it, run in-process by
`run_app`, so the sweeper plugin, the launcher and the per-job `.hydra/` records are the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hpo_toy import RECIPE, score
from optuna.trial import TrialState

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STUDY = "toy-42"


def _load(toy, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=toy.compose().paths.optuna_storage)


def _result(toy, name: str = STUDY) -> dict:
    return json.loads((toy.root / "outputs/demo/hpo" / name / "study.json").read_text())


def test_failed_trial_is_recorded_and_the_study_goes_on(toy, capsys) -> None:
    assert toy("toy.fail_on=[1]") == 0
    res = _result(toy)
    assert (res["n_complete"], res["n_failed"], res["n_pruned"]) == (2, 1, 0)
    trials = _load(toy).trials
    assert len(trials) == 3 and trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["fail_reason"] == "RuntimeError: out of memory"
    sweep = toy.root / "outputs/demo/hpo" / STUDY
    assert "out of memory" in (sweep / "1" / "error.txt").read_text()
    out = capsys.readouterr().out
    assert out.count("] 1/3 trial #0") == 1 and "trial #1 FAIL RuntimeError" in out
    assert (sweep / "history.png").stat().st_size > 1000
    assert (sweep / "importances.png").stat().st_size > 1000
    # every trial is a Hydra job with its own .hydra record holding the trial's overrides
    records = sorted((toy.root / "outputs/demo/toy/multirun").glob("*/*/*/.hydra/overrides.yaml"))
    assert len(records) == 3
    for n, rec in enumerate(records):
        ov = yaml.safe_load(rec.read_text())
        assert f"hpo.trial={n}" in ov and any(o.startswith("toy.lr=") for o in ov)


def test_the_same_failure_three_times_in_a_row_stops_the_study(toy, capsys) -> None:
    assert toy("hpo.n_trials=10", "toy.fail_on=[0,1,2,3,4,5,6,7,8,9]") == 2
    err = capsys.readouterr().err
    assert "3 trials in a row failed with RuntimeError" in err and "Traceback" not in err
    assert [x.state for x in _load(toy).trials] == [TrialState.FAIL] * 3


def test_best_yaml_is_a_recipe_delta_that_composes(toy) -> None:
    assert toy("hpo.n_trials=4") == 0
    res = _result(toy)
    best = _load(toy).best_trial
    assert res["best_value"] == pytest.approx(best.value) and res["best_params"] == best.params
    text = Path(res["best_yaml"]).read_text()
    assert f"val/acc = {best.value:.6g}" in text and f"trial #{best.number}" in text
    delta = yaml.safe_load(text)
    assert delta["defaults"] == [{"override toy": best.params["toy"]}]
    assert delta["toy"]["lr"] == pytest.approx(best.params["toy.lr"])
    base = yaml.safe_load(RECIPE)  # promote it: base recipe + delta composes to the best trial
    promoted = {
        "defaults": base["defaults"][:-1] + delta["defaults"] + ["_self_"],
        **{k: v for k, v in delta.items() if k != "defaults"},
    }
    path = toy.recipe.with_name("promoted.yaml")
    path.write_text(yaml.safe_dump(promoted))
    from autoscope.config import compose

    again = compose(str(path), [])
    assert again.toy.name == best.params["toy"] and again.toy.lr == best.params["toy.lr"]
    assert score(again) == pytest.approx(best.value)


def test_keyboard_interrupt_then_resume_to_exactly_n_trials(toy) -> None:
    assert toy("toy.interrupt_on=1") == 130
    assert toy() == 0  # the same command again resumes
    res = _result(toy)
    assert (res["n_complete"], res["n_failed"]) == (3, 0)
    t = _load(toy).trials
    assert [x.state for x in t] == [TrialState.COMPLETE, TrialState.FAIL] + [
        TrialState.COMPLETE
    ] * 2
    assert t[2].user_attrs["retry_of"] == 1 and t[2].params == t[1].params


def _cli(toy, *args: str) -> list[str]:
    code = (
        "import sys; from autoscope.stages.app import run_app; "
        "sys.exit(run_app('toy', 'hpo_toy:task', sys.argv[1], sys.argv[2:], 'autoscope toy'))"
    )
    return [sys.executable, "-c", code, str(toy.recipe), *args]


def test_killed_sweep_resumes_where_it_stopped(toy) -> None:
    proc = subprocess.Popen(_cli(toy, "-m", "toy.hang_on=2"), cwd=toy.root, env=os.environ)
    try:
        deadline = time.monotonic() + 120
        while not (toy.root / "started-2").exists():
            assert proc.poll() is None, "the sweep ended before trial #2"
            assert time.monotonic() < deadline, "trial #2 never started"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t = _load(toy).trials
    assert [x.state for x in t] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    assert toy() == 0
    res, t = _result(toy), _load(toy).trials
    assert res["n_complete"] == 3 and res["n_failed"] == 0
    assert [x.state for x in t] == [TrialState.COMPLETE] * 2 + [
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert t[3].params == t[2].params and t[3].user_attrs["retry_of"] == 2
    assert Path(res["best_yaml"]).is_file()
    assert toy() == 0  # a finished study runs nothing more
    assert len(_load(toy).trials) == 4


def test_pruned_trials_count(toy) -> None:
    assert toy("toy.prune_from=1") == 0
    res = _result(toy)
    assert (res["n_complete"], res["n_pruned"], res["n_failed"]) == (1, 2, 0)
    t = _load(toy).trials
    assert t[1].intermediate_values  # the job reported to its trial through the storage
    sweep = Path(res["best_yaml"]).parent  # one completed trial: best.yaml but no importances
    assert (sweep / "history.png").is_file() and not (sweep / "importances.png").exists()


def test_time_budget_stops_the_study(toy) -> None:
    assert toy("hpo.n_trials=null", "hpo.timeout_s=1", "toy.sleep_s=0.6") == 0
    assert 1 <= _result(toy)["n_complete"] <= 2


def test_objective_without_the_metric_fails_its_trial(toy) -> None:
    assert toy("hpo.n_trials=1", "toy.metric=val/loss") == 0
    res = _result(toy)
    assert res["n_failed"] == 1 and res["best_yaml"] is None
    assert "no finite 'val/acc'" in _load(toy).trials[0].user_attrs["fail_reason"]


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["hpo=typo"], r"hpo.params\['toy.lrr'\]: no such key"),
        (["hpo.fixed={trainer.nope:1}"], r"hpo.fixed\['trainer.nope'\]: no such key"),
        (["hpo.n_trials=null"], "n_trials or timeout_s"),
        (["metric_mode=best"], "metric_mode"),
        (["hpo.params.toy={type:categorical,choices:[a,zzz]}"], "choice 'zzz'"),
    ],
)
def test_bad_space_is_a_user_error_before_any_trial(toy, capsys, args, msg) -> None:
    from hpo_toy import SPACE

    typo = SPACE.replace("toy.depth:", "toy.lrr:")
    (toy.recipe.parent / "hpo" / "typo.yaml").write_text(typo)
    assert toy(*args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    import re

    assert re.search(msg, err)
    assert not (toy.root / "outputs/demo/hpo").exists()


def test_cli_comma_lists_join_the_search_space(toy) -> None:
    assert toy("hpo.n_trials=3", "seed=1,2") == 0
    t = _load(toy, "toy-42").trials
    assert all(x.params["seed"] in (1, 2) for x in t)


def test_mlflow_parent_run_with_nested_trials_and_pictures(toy) -> None:
    import mlflow

    assert toy("hpo.mlflow=true", "hpo.n_trials=2", "toy.mlflow_run=true") == 0
    res = _result(toy)
    client = mlflow.MlflowClient(tracking_uri=toy.compose().paths.mlflow_uri)
    parent_id = _load(toy).user_attrs["mlflow_parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.data.tags["autoscope.kind"] == "hpo_study" and parent.info.status == "FINISHED"
    assert parent.data.metrics["hpo/best_value"] == pytest.approx(res["best_value"])
    assert "val/acc" not in parent.data.metrics  # never mistaken for a model run
    assert parent.data.tags["best.run_id"] == res["best_run_id"]
    assert parent.data.tags["recipe"] == "toy"
    arts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"best.yaml", "history.png", "importances.png"} <= arts
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert len(children) == 2


def test_joblib_launcher_runs_two_trials_at_once(toy, capsys) -> None:
    args = ["hpo.n_trials=4", "toy.sleep_s=1.5", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    assert toy(*args) == 0
    out = capsys.readouterr().out
    assert "2 at a time through the joblib launcher" in out
    t = _load(toy).trials
    assert [x.state for x in t] == [TrialState.COMPLETE] * 4
    runs = sorted((toy.root / "outputs/demo/toy/multirun").glob("*/*/*/.hydra"))
    assert len(runs) == 4
    pids = {p.read_text() for p in toy.root.glob("outputs/demo/toy/multirun/*/*/*/pid.txt")}
    assert len(pids) == 2 and str(os.getpid()) not in pids


@pytest.mark.slow
def test_two_sweepers_share_one_study(toy) -> None:
    cmd = _cli(toy, "-m", "hpo.n_trials=6", "toy.sleep_s=1.0")
    procs = [subprocess.Popen(cmd, cwd=toy.root, env=os.environ) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    t = _load(toy).trials
    assert all(x.state == TrialState.COMPLETE for x in t)
    assert 6 <= len(t) <= 7  # a worker that starts while the other finishes may add one
    assert len({x.user_attrs["worker"] for x in t}) == 2


def test_unreachable_storage_is_a_user_error_without_the_password(toy, capsys) -> None:
    assert toy("hpo.storage=postgresql://u:secret@127.0.0.1:1/optuna") == 2
    err = capsys.readouterr().err
    assert "u:***@127.0.0.1:1/optuna': cannot open" in err and "secret" not in err


def test_fixed_overrides_reach_every_trial(toy) -> None:
    assert toy("hpo.n_trials=2", "hpo.fixed={seed:3}", "seed=5") == 0  # fixed beats the CLI
    runs = sorted((toy.root / "outputs/demo/toy/multirun").glob("*/*/*/.hydra/config.yaml"))
    assert len(runs) == 2 and all(yaml.safe_load(r.read_text())["seed"] == 3 for r in runs)


def test_relative_sqlite_storage_lives_under_the_working_folder(toy) -> None:
    assert toy("hpo.n_trials=1", "hpo.storage=sqlite:///outputs/demo/hpo/pipeline.db") == 0
    assert (toy.root / "outputs/demo/hpo/pipeline.db").is_file()


@pytest.mark.parametrize(
    ("args", "base"),
    [
        ([], {"toy": "a", "toy.lr": 0.1}),  # toy.depth is absent in choice a
        (["toy=b"], {"toy": "b", "toy.lr": 0.05, "toy.depth": 2}),
        (["toy.lr=5.0"], {"toy": "a"}),  # outside the space: sampled
    ],
)
def test_trial_0_runs_the_recipes_values_inside_the_space(toy, args, base) -> None:
    assert toy("hpo.start_from_base=true", "hpo.n_trials=1", *args) == 0
    t = _load(toy).trials[0]
    assert t.user_attrs["base"] is True
    assert {k: t.params[k] for k in base} == base
