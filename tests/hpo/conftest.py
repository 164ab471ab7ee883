"""Fixtures of the sweeper tests: the toy recipe composed in a temp workspace.

The recipe lives in a temp folder beside its groups (Hydra searches the recipe's folder first, then
`conf/`), and the workspace is that temp folder, so every store (Optuna, MLflow) is a real SQLite
file under tmp_path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hpo_toy import write_toy  # noqa: E402


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Return `make(overrides) -> cfg` composing the toy recipe in a temp workspace."""
    from autoscope.config import compose

    recipe = write_toy(tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)

    def make(overrides: list[str] | None = None) -> Any:
        return compose(str(recipe), ["multirun=true", *(overrides or [])], "train")

    return make
