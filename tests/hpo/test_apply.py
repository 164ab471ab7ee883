"""Trial configs: parameters applied as Hydra overrides, and the space checked before a trial."""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from autoscope.errors import UserError
from autoscope.hpo.apply import apply_params, check_space, is_group, to_overrides
from autoscope.hpo.space import parse_space


def test_plain_key_follows_interpolation_and_keeps_command_line(toy) -> None:
    base = toy(["seed=7"])
    t = apply_params(base, {"toy.lr": 0.02})
    assert t.toy.lr == 0.02 and t.toy.max_lr == 0.02  # recomposed: the interpolation followed
    assert t.seed == 7  # the command-line override stayed
    assert base.toy.lr == 0.1  # the base is never changed


def test_group_choice_swaps_the_whole_group(toy) -> None:
    base = toy(["seed=7"])
    assert is_group(base, "toy") and not is_group(base, "toy.lr")
    t = apply_params(base, {"toy": "b", "toy.depth": 4})
    assert t.toy.name == "b" and t.toy.depth == 4 and t.toy.lr == 0.05 and t.seed == 7
    assert "depth" not in base.toy


def test_recorded_overrides_are_replayed(toy) -> None:
    base = toy(["seed=7"])
    with open_dict(base):
        base.overrides = ["seed=7", "multirun=true"]
    t = apply_params(base, {"toy": "b", "toy.lr": 0.3})
    assert (t.seed, t.toy.name, t.toy.lr, t.toy.max_lr) == (7, "b", 0.3, 0.3)


def test_without_recipe_plain_keys_are_set_in_place(toy) -> None:
    base = toy()
    with open_dict(base):
        base.recipe = None
    assert apply_params(base, {"toy.lr": 0.5}).toy.lr == 0.5
    with pytest.raises(UserError, match="needs cfg.recipe"):
        apply_params(base, {"toy": "b"})


def test_to_overrides_quotes_odd_strings(toy) -> None:
    cfg = toy()
    assert to_overrides(cfg, {"toy.lr": 0.5, "toy": "b", "x.s": "a b"}) == [
        "toy=b",
        "toy.lr=0.5",
        "x.s='a b'",
    ]


def test_space_of_the_toy_recipe_is_valid(toy) -> None:
    cfg = toy()
    check_space(cfg, parse_space(cfg.hpo.params))  # toy.depth exists in choice b only: fine


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        ({"toy.lrr": {"type": "float", "low": 0.1, "high": 1.0}}, "toy.lrr.*no such key"),
        ({"trainer.nope": {"type": "int", "low": 1, "high": 2}}, "trainer.nope.*no such key"),
        ({"toy": {"type": "categorical", "choices": ["a", "zzz"]}}, "no choice 'zzz'"),
        ({"toy": {"type": "float", "low": 0.1, "high": 1.0}}, "config group"),
        ({"paths": {"type": "categorical", "choices": [1, 2]}}, "section, not a value"),
    ],
)
def test_unknown_keys_fail_before_any_trial(toy, params: dict, msg: str) -> None:
    cfg = toy()
    with pytest.raises(UserError, match=msg) as e:
        check_space(cfg, parse_space(params))
    assert "\n" not in str(e.value)
