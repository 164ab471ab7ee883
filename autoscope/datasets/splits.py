"""Group-wise, stratified, seeded train/val/test splits (a group never straddles two splits)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from autoscope.errors import UserError

SPLITS = ("train", "val", "test")


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validate `dataset.split.fractions` (keys train/val/test, non-negative, sum 1)."""
    fr = {str(k): float(v) for k, v in dict(fractions).items()}
    bad = [k for k in fr if k not in SPLITS]
    if bad or any(v < 0 for v in fr.values()) or abs(sum(fr.values()) - 1.0) > 1e-6:
        raise UserError(
            f"dataset.split.fractions {fr}: keys must be train/val/test, non-negative, summing to 1"
        )
    return {s: fr.get(s, 0.0) for s in SPLITS}


SIZED_BY = ("groups", "patches")


def assign_splits(
    df: pd.DataFrame,
    fractions: Mapping[str, float],
    seed: int,
    num_classes: int,
    sized_by: str = "groups",
) -> pd.Series:
    """Assign a split per row, keeping every `group` whole.

    Rows that already carry a split (e.g. from an import CSV) keep it, and their whole group
    follows it. Remaining groups go, largest first (ties broken by a seeded shuffle), to the split
    whose per-class quota they fill best, so class proportions stay close across splits.

    Quotas count groups by default (`sized_by="groups"`, each group one unit spread over its
    classes): a validation split of 15 % then holds 15 % of the slides or patients, however many
    patches each has, which is what makes its ranking of models trustworthy. With
    `sized_by="patches"` the quotas count patches (a few large slides may then fill a split).

    Args:
        df: rows with `group`, `label_idx` and optionally `split` (None where unassigned).
        fractions: split -> fraction of groups (or patches).
        seed: random seed (same inputs and seed give the same splits).
        num_classes: number of project classes.
        sized_by: `groups` or `patches`: what the fractions count.

    Returns:
        The split of every row (index aligned with df).
    """
    fr = check_fractions(fractions)
    if sized_by not in SIZED_BY:
        raise UserError(f"dataset.split.sized_by '{sized_by}': use groups or patches")
    names = [s for s in SPLITS if fr[s] > 0]
    given = df["split"] if "split" in df else pd.Series(None, index=df.index, dtype=object)
    groups, inverse = np.unique(df["group"].astype(str).to_numpy(), return_inverse=True)
    counts = np.zeros((len(groups), num_classes))
    np.add.at(counts, (inverse, df["label_idx"].to_numpy()), 1)
    size = counts.sum(axis=1)
    if sized_by == "groups":  # one unit per group, spread over its classes
        counts = counts / np.maximum(size, 1)[:, None]
    total = counts.sum(axis=0)
    target = np.array([[fr[s] * t for t in total] for s in names])
    current = np.zeros_like(target)
    group_split: dict[int, str] = {}
    for gi, s in zip(inverse, given, strict=True):
        if isinstance(s, str) and s in SPLITS and gi not in group_split:
            group_split[gi] = s
            if s in names:
                current[names.index(s)] += counts[gi]
    rng = np.random.default_rng(seed)
    todo = [g for g in rng.permutation(len(groups)) if g not in group_split]
    todo.sort(key=lambda g: -size[g])
    for g in todo:
        w = counts[g] / max(counts[g].sum(), 1)
        gap = np.clip(target - current, 0, None)
        need = (gap / np.maximum(target, 1e-9)) @ w  # how much of its quota of these classes
        overall = gap.sum(axis=1) / np.maximum(target.sum(axis=1), 1e-9)
        s = max(range(len(names)), key=lambda i: (round(float(need[i]), 9), overall[i]))
        group_split[g] = names[s]
        current[s] += counts[g]
    return pd.Series([group_split[g] for g in inverse], index=df.index, dtype=object)


def val_groups(manifest: pd.DataFrame) -> int:
    """How many groups the validation split holds (the independent units that rank models)."""
    return int(manifest.loc[manifest["split"] == "val", "group"].nunique())


def split_counts(df: pd.DataFrame) -> str:
    """A one-line summary `train=N (a/b) val=...` of patches per split."""
    parts = []
    for s in SPLITS:
        sub = df[df["split"] == s]
        parts.append(f"{s}={len(sub)} ({sub['group'].nunique()} groups)")
    return " ".join(parts)
