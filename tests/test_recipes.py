"""Every recipe composes with the base config."""

import pytest

from autoscope.config import compose, list_recipes


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipe_composes(recipe, tmp_path):
    cfg = compose(recipe, [f"paths.workspace={tmp_path}"], stage="test")
    assert cfg.project.name
    assert cfg.paths.data.startswith(str(tmp_path))
    assert cfg.recipe == recipe
    assert [c.name for c in cfg.project.classes]


def test_compose_records_user_overrides(tmp_path):
    over = [f"paths.workspace={tmp_path}", "seed=7"]
    cfg = compose("demo", over, stage="test")
    assert list(cfg.overrides) == over and cfg.seed == 7
