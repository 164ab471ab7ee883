"""Pictures of a training run: confusion matrix and a grid of sample predictions (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoscope.atomic import atomic_file


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts `[true, predicted]` of shape `[C, C]`."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets.astype(np.int64), preds.astype(np.int64)), 1)
    return cm


def per_class_metrics(cm: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    out = {}
    for i, name in enumerate(names):
        tp = float(cm[i, i])
        prec = tp / max(1.0, float(cm[:, i].sum()))
        rec = tp / max(1.0, float(cm[i, :].sum()))
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[name] = {"precision": prec, "recall": rec, "f1": f1, "support": float(cm[i, :].sum())}
    return out


def plot_confusion(cm: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = 2.5 + 0.6 * len(names)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(names)):
        for j in range(len(names)):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.2f}", ha="center", va="center", color=colour)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_samples(
    images: np.ndarray,
    targets: np.ndarray,
    preds: np.ndarray,
    probs: np.ndarray,
    names: list[str],
    path: Path,
    cols: int = 8,
) -> Path:
    """Grid of patches titled `true -> predicted (p)`, wrong ones in red, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k])
        ok = targets[k] == preds[k]
        ax.set_title(
            f"{names[targets[k]]}\n→{names[preds[k]]} {probs[k]:.2f}",
            fontsize=7,
            color="black" if ok else "red",
        )
    _save(fig, path)
    plt.close(fig)
    return path
