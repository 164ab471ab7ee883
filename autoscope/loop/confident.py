"""Confident learning (Northcutt et al., 2021), written here: which given labels look wrong.

Per-class thresholds on self-confidence give the confident joint (given label x likely true
label); rows off its diagonal are the label issues, ranked by the margin between the suggested
class's probability and the given one's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelIssues:
    """Every row's suggestion and score; `issue` marks rows off the confident joint's diagonal."""

    suggested: np.ndarray  # int [N]: the likely true class (the given one where no issue)
    score: np.ndarray  # float [N]: p(suggested) - p(given), in [-1, 1]; larger = more suspect
    issue: np.ndarray  # bool [N]
    joint: np.ndarray  # int [C, C]: the confident joint (given x likely true)
    thresholds: np.ndarray  # float [C]: mean self-confidence of each given class

    def ranked(self) -> np.ndarray:
        """Row indices of the issues, most suspect first."""
        rows = np.flatnonzero(self.issue)
        return rows[np.argsort(-self.score[rows], kind="stable")]


def thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-class threshold t_j: mean p_j over the rows labelled j (1.0 for an absent class)."""
    c = probs.shape[1]
    return np.array(
        [probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(c)]
    )


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """The confident joint and the rows whose confident class differs from their label.

    A row's confident class is the most probable of the classes whose probability reaches their
    threshold; rows reaching none are left out of the joint (not confident about anything).

    Args:
        labels: int [N] given labels.
        probs: float [N, C] out-of-fold probabilities.
    """
    labels = np.asarray(labels, np.int64)
    n, c = probs.shape
    t = thresholds(labels, probs)
    above = probs >= t[None, :] - 1e-12
    masked = np.where(above, probs, -1.0)
    confident = masked.argmax(axis=1)
    has = above.any(axis=1)
    joint = np.zeros((c, c), np.int64)
    np.add.at(joint, (labels[has], confident[has]), 1)
    issue = has & (confident != labels)
    others = probs.copy()
    others[np.arange(n), labels] = -1.0
    best_other = others.argmax(axis=1)
    suggested = np.where(issue, confident, labels)
    alt = np.where(issue, confident, best_other)
    score = probs[np.arange(n), alt] - probs[np.arange(n), labels]
    return LabelIssues(suggested, score, issue, joint, t)
