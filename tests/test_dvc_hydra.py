"""DVC's Hydra mode in a workspace: DVC's own composition (`compose_and_dump`, as `dvc exp run -S`
calls it) finds our conf/ through the search-path plugin, and its params.yaml reaches compose."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from autoscope.config import compose

RECIPE = """\
defaults:
  - config
  - override model: tiny_cnn
  - _self_

trainer:
  max_epochs: 2
"""
HYDRA = "[hydra]\n    enabled = true\n    config_dir = recipes\n    config_name = r\n"


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from dvc.utils.hydra import compose_and_dump

    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(HYDRA)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "r.yaml").write_text(RECIPE)
    monkeypatch.chdir(tmp_path)
    time.sleep(0.01)
    overrides = ["model=small_cnn", "trainer.max_epochs=7"]
    recipes = str(tmp_path / "recipes")
    compose_and_dump(tmp_path / "params.yaml", recipes, None, "r", str(tmp_path), overrides)
    return tmp_path


def test_dvc_composes_a_recipe_with_our_conf(ws: Path) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    assert params["model"]["name"] == "small_cnn" and params["trainer"]["max_epochs"] == 7
    assert params["paths"]["workspace"] == str(ws.resolve())


def test_params_blocks_reach_compose_and_the_command_line_wins(ws: Path, capsys) -> None:
    cfg = compose("r")
    assert cfg.model.name == "small_cnn" and cfg.trainer.max_epochs == 7
    assert "tiny_cnn" not in str(cfg.model)  # the whole block: none of tiny_cnn's keys stay
    assert "sets model, trainer of recipe r" in capsys.readouterr().out
    assert compose("r", ["trainer.max_epochs=3"]).trainer.max_epochs == 3
    assert compose("r", ["model=resnet18"]).model.name == "resnet18"  # a chosen group stays
    assert compose("r", dvc_params=False).model.name == "tiny_cnn"


def test_a_recipe_edited_after_params_wins(ws: Path, capsys) -> None:
    later = time.time() + 5
    os.utime(ws / "recipes" / "r.yaml", (later, later))
    assert compose("r").model.name == "tiny_cnn"
    assert "r.yaml changed after params.yaml" in capsys.readouterr().out


def test_hydra_mode_off_ignores_params(ws: Path) -> None:
    (ws / ".dvc" / "config").write_text(HYDRA.replace("true", "false"))
    assert compose("r").model.name == "tiny_cnn"


def test_params_composed_in_another_folder_are_rebased(ws: Path, monkeypatch, capsys) -> None:
    """A queued experiment runs in a copy of the workspace (`.dvc/tmp/exps/...`): the composing
    workspace's paths, in URIs too (`sqlite:///<ws>/...`), become the copy's."""
    import shutil

    copy = ws.parent / "exp-copy"
    shutil.copytree(ws, copy)  # mtimes kept: params.yaml is still newer than the recipe
    monkeypatch.chdir(copy)
    cfg = compose("r")
    assert cfg.model.name == "small_cnn"
    assert str(copy.resolve()) in str(cfg.logger.tracking_uri)
    assert str(ws.resolve()) + "/" not in str(cfg.logger.tracking_uri)
    assert "sets model, trainer of recipe r" in capsys.readouterr().out  # not logger, not paths
