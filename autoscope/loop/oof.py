"""Out-of-fold class probabilities: a linear head refitted on k group-wise folds.

A patch's probabilities come from a head that never saw its group (slide, patient or image
cluster), so a wrong label cannot be memorised and shows up as low self-confidence.
"""

from __future__ import annotations

import numpy as np


def linear_head(c: float = 1.0, max_iter: int = 300):
    """The linear head: standardised features into a multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))


def fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, num_classes: int, c: float = 1.0
) -> np.ndarray:
    """Fit a linear head and return its probabilities for x_eval as float [N, num_classes]."""
    out = np.zeros((len(x_eval), num_classes), np.float64)
    present = np.unique(y_train)
    if len(present) == 1:  # one class only: the head cannot be fitted
        out[:, present[0]] = 1.0
        return out
    head = linear_head(c).fit(x_train, y_train)
    out[:, head.classes_] = head.predict_proba(x_eval)
    return out


def out_of_fold(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    num_classes: int,
    folds: int = 5,
    seed: int = 0,
    c: float = 1.0,
) -> np.ndarray:
    """Probabilities [N, num_classes] of every row from a head fitted without its group.

    Args:
        features: float [N, D] per-patch features.
        labels: int [N] given labels.
        groups: [N] the split unit (a group never lies in the fold that scores it).
        num_classes: number of classes.
        folds: number of folds (fewer when there are fewer groups).
        seed: shuffles the groups into folds.
        c: inverse regularisation of the logistic regression.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray(groups).astype(str)
    k = max(2, min(folds, len(np.unique(groups))))
    probs = np.zeros((len(labels), num_classes), np.float64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fit_rows, eval_rows in splitter.split(features, labels, groups):
        probs[eval_rows] = fit_predict(
            features[fit_rows], labels[fit_rows], features[eval_rows], num_classes, c
        )
    return probs
