"""`run=best` is the recipe's champion: the sweep's choice, never a run on another dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import compose_cfg, fake_run

from autoscope.archive import select
from autoscope.errors import UserError

V1, V2 = "1" * 32 + ".dir", "2" * 32 + ".dir"


def _client_and_exp(cfg):
    client = select.mlflow_client(str(cfg.paths.mlflow_uri))
    return client, select.experiment_id(client, str(cfg.project.name))


def _runs(cfg, accs_and_versions):
    client = select.mlflow_client(str(cfg.paths.mlflow_uri))
    ids = []
    for i, (acc, version) in enumerate(accs_and_versions):
        rid = fake_run(cfg, val_acc=acc, seed=i)
        client.set_tag(rid, "dataset_version", version)
        ids.append(rid)
    return ids


def _pick(cfg, **kw):
    client, exp = _client_and_exp(cfg)
    lines: list[str] = []
    run = select.pick_run(
        client,
        exp,
        "best",
        "val/acc",
        "max",
        Path(cfg.paths.outputs) / "train" / "runs",
        "demo",
        say=lines.append,
        **kw,
    )
    return run.info.run_id, lines


def test_best_ignores_a_better_run_on_another_dataset(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path / "ws")
    low, other, mid = _runs(cfg, [(0.80, V1), (0.99, V2), (0.90, V1)])
    rid, lines = _pick(cfg, dataset_version=V1)
    assert rid == mid
    assert "2 finished run(s) on dataset version " + V1 in lines[0]
    assert _pick(cfg, dataset_version=V2)[0] == other
    with pytest.raises(UserError, match="on dataset version 3"):
        _pick(cfg, dataset_version="3" * 32 + ".dir")


def test_ties_go_to_the_oldest_run(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path / "ws")
    first, _second = _runs(cfg, [(0.9, V1), (0.9, V1)])
    assert _pick(cfg, dataset_version=V1)[0] == first


def test_best_is_the_sweeps_choice_and_best_yaml_names_it(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path / "ws")
    trial0, trial1, final = _runs(cfg, [(0.91, V1), (0.97, V1), (0.5, V1)])
    study = Path(cfg.paths.outputs) / "hpo" / "s1"
    study.mkdir(parents=True)
    (study / "study.json").write_text(
        json.dumps({"best_run_id": trial0, "best_trial": 0, "final_run_id": None})
    )
    rid, lines = _pick(cfg, dataset_version=V1, study_dir=study)
    assert rid == trial0 != trial1  # not the higher val/acc elsewhere in the experiment
    assert "best trial #0 of sweep s1" in lines[0]
    (study / "study.json").write_text(
        json.dumps({"best_run_id": trial0, "best_trial": 0, "final_run_id": final})
    )
    assert _pick(cfg, dataset_version=V1, study_dir=study)[0] == final
    with pytest.raises(UserError, match="run the sweep again"):
        _pick(cfg, dataset_version=V2, study_dir=study)
    # a recipe whose study never ran here falls back to its dataset's runs
    assert _pick(cfg, dataset_version=V1, study_dir=study.with_name("s2"))[0] == trial1
