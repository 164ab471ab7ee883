"""Fixtures of the sweeper tests: the toy recipe run as a real Hydra app in a temp workspace.

The recipe lives in a temp folder beside its groups (Hydra searches the recipe's folder first, then
`conf/`), and the workspace is that temp folder, so every store (Optuna, MLflow) is a real SQLite
file under tmp_path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from hpo_toy import Toy, write_toy  # noqa: E402


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Toy:
    """The toy app in a temp workspace (launcher workers find `hpo_toy` through PYTHONPATH)."""
    recipe = write_toy(tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    root = HERE.parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(root)]))
    return Toy(recipe, tmp_path)
