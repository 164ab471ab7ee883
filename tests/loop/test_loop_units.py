"""Confident learning and selection on small synthetic arrays (exact, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from autoscope.loop.confident import find_label_issues
from autoscope.loop.corrections import next_name
from autoscope.loop.selection import cold_start, k_centre_greedy, uncertainty


def test_confident_joint_flags_the_flipped_rows_first() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), truth] = 0.9
    labels = truth.copy()
    flipped = np.arange(0, 300, 20)
    labels[flipped] = (truth[flipped] + 1) % 3
    issues = find_label_issues(labels, probs)
    assert set(issues.ranked()) == set(flipped)
    assert np.array_equal(issues.suggested[flipped], truth[flipped])
    assert issues.joint.sum() == 300 and np.trace(issues.joint) == 300 - len(flipped)


def test_uncertainty_and_k_centre_spread_the_picks() -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    assert np.argsort(-uncertainty(probs, "margin")).tolist() == [0, 2, 1]
    assert uncertainty(probs, "entropy")[0] == 1.0
    emb = np.r_[np.zeros((10, 2)), np.ones((10, 2)) * 10, [[0, 10]]]
    picked = k_centre_greedy(emb, 3, np.arange(len(emb)))
    assert {int(p) // 10 for p in picked if p < 20} == {0, 1} and 20 in picked
    groups = np.array(["a"] * 10 + ["b"] * 10 + ["c"])
    capped = k_centre_greedy(emb, 5, np.arange(len(emb)), groups=groups, cap=1)
    assert len(capped) == 3 and len(set(groups[capped])) == 3


def test_cold_start_takes_one_typical_row_per_cluster() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [8, 0], [0, 8]])
    x = np.concatenate([c + rng.normal(0, 0.3, (50, 2)) for c in centres])
    picked = cold_start(x, 3, seed=0)
    assert sorted(int(p) // 50 for p in picked) == [0, 1, 2]


def test_next_version_names() -> None:
    assert next_name("demo_tissue") == ("demo_tissue-r1", 1)
    assert next_name("demo_tissue-r1") == ("demo_tissue-r2", 2)


def test_bald_ranks_disagreement_above_plain_hesitation() -> None:
    from autoscope.loop.selection import uncertainty

    agree = np.array([[0.5, 0.5]] * 4)  # every pass unsure the same way
    split = np.array([[1.0, 0.0], [0.0, 1.0]] * 2)  # the passes contradict each other
    sure = np.array([[0.99, 0.01]] * 4)
    samples = np.stack([agree, split, sure], axis=1)  # [T=4, N=3, C=2]
    bald = uncertainty(samples.mean(0), "bald", samples)
    assert bald[1] > 0.9 and bald[0] < 0.01 and bald[2] < 0.01
    assert uncertainty(samples.mean(0), "entropy")[0] > 0.99  # entropy cannot tell 0 from 1
    with pytest.raises(ValueError, match="needs MC-dropout samples"):
        uncertainty(samples.mean(0), "bald")


def test_mc_dropout_passes_vary_and_repeat() -> None:
    import torch

    from autoscope.errors import UserError
    from autoscope.loop.features import mc_dropout_probs

    class Net(torch.nn.Module):
        def __init__(self, p: float) -> None:
            super().__init__()
            self.drop, self.head = torch.nn.Dropout(p), torch.nn.Linear(3, 2)
            self.norm = torch.nn.BatchNorm1d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(self.norm(x.float().mean(dim=(1, 2)) / 255)))

    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)
    net = Net(0.5)
    a = mc_dropout_probs(net, images, passes=6, batch=4)
    assert a.shape == (6, 10, 2) and np.allclose(a.sum(-1), 1, atol=1e-5)
    assert a.std(axis=0).max() > 0.01  # the passes differ
    assert np.array_equal(a, mc_dropout_probs(net, images, passes=6, batch=4))  # seeded
    assert not net.training and not net.drop.training  # left in eval mode
    with pytest.raises(UserError, match="no dropout layer"):
        mc_dropout_probs(Net(0.0), images, passes=3)
