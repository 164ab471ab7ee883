"""Search-space parsing, validation and sampling."""

from __future__ import annotations

import optuna
import pytest

from autoscope.errors import UserError
from autoscope.hpo.space import ParamSpec, contains, parse_space, suggest


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        ({"type": "gaussian"}, "type 'gaussian'"),
        ({"type": "float", "low": 1.0, "high": 0.1}, "low < high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"type": "int", "low": 1.5, "high": 4}, "must be an int"),
        ({"type": "categorical", "choices": []}, "non-empty list"),
        ({"type": "categorical", "choices": [[1, 2]]}, "scalars"),
        ({"type": "float", "low": 0.1, "high": 1.0, "choices": [1]}, "unknown field"),
        ({"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}, "step"),
    ],
)
def test_invalid_entries_are_one_line_user_errors(raw: dict, msg: str) -> None:
    with pytest.raises(UserError, match=msg) as e:
        parse_space({"model.lr": raw})
    assert "model.lr" in str(e.value) and "\n" not in str(e.value)


def test_empty_space_is_a_user_error() -> None:
    with pytest.raises(UserError, match="empty"):
        parse_space({})


def test_suggest_respects_each_type() -> None:
    specs = parse_space(
        {
            "a.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "a.n": {"type": "int", "low": 2, "high": 8, "step": 2},
            "a.s": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
            "model": {"type": "categorical", "choices": ["x", "y"]},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        t = study.ask()
        v = {s.key: suggest(t, s) for s in specs}
        assert 1e-4 <= v["a.lr"] <= 1e-1
        assert v["a.n"] in (2, 4, 6, 8)
        assert round(v["a.s"] / 0.05, 6) == round(v["a.s"] / 0.05)
        assert v["model"] in ("x", "y")
        study.tell(t, 0.0)
    assert set(study.trials[0].params) == {"a.lr", "a.n", "a.s", "model"}


def test_contains() -> None:
    f = ParamSpec("k", "float", low=0.1, high=1.0)
    i = ParamSpec("k", "int", low=1, high=4)
    c = ParamSpec("k", "categorical", choices=(64, 128))
    assert contains(f, 0.5) and contains(f, 1) and not contains(f, 2.0) and not contains(f, True)
    assert contains(i, 3) and not contains(i, 3.0)
    assert contains(c, 128) and not contains(c, 256) and not contains(c, 128.0)
