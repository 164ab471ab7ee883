"""Active-learning selection: uncertainty with diversity, a per-group cap, and a cold start."""

from __future__ import annotations

import numpy as np


def _entropy(p: np.ndarray) -> np.ndarray:
    """Entropy over the last axis, normalised to [0, 1] by log(classes)."""
    q = np.clip(p, 1e-12, 1.0)
    return -(q * np.log(q)).sum(axis=-1) / np.log(max(p.shape[-1], 2))


def uncertainty(
    probs: np.ndarray, kind: str = "margin", samples: np.ndarray | None = None
) -> np.ndarray:
    """Per-row uncertainty in [0, 1]: `margin` (1 - (p1 - p2)), normalised `entropy`, or `bald`.

    `bald` is the mutual information between the label and the weights, H(mean p) - mean H(p_t),
    from MC-dropout `samples` [T, N, C]: high where the passes disagree, not where each pass
    is merely unsure.
    """
    if kind == "entropy":
        return _entropy(probs)
    if kind == "bald":
        if samples is None:
            raise ValueError("uncertainty 'bald' needs MC-dropout samples (select.mc_dropout)")
        return np.clip(_entropy(samples.mean(axis=0)) - _entropy(samples).mean(axis=0), 0, 1)
    if kind != "margin":
        raise ValueError(f"uncertainty '{kind}': use margin, entropy or bald")
    top = np.sort(probs, axis=1)[:, ::-1]
    second = top[:, 1] if probs.shape[1] > 1 else np.zeros(len(probs))
    return 1.0 - (top[:, 0] - second)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)


def _capped(order: np.ndarray, groups: np.ndarray | None, cap: int | None, n: int) -> np.ndarray:
    """The first n rows of `order` taking at most `cap` per group."""
    if groups is None or not cap:
        return order[:n]
    taken: dict[str, int] = {}
    out = []
    for i in order:
        g = str(groups[i])
        if taken.get(g, 0) < cap:
            taken[g] = taken.get(g, 0) + 1
            out.append(int(i))
            if len(out) == n:
                break
    return np.asarray(out, np.int64)


def k_centre_greedy(
    emb: np.ndarray,
    n: int,
    candidates: np.ndarray,
    labelled: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    cap: int | None = None,
) -> np.ndarray:
    """Greedy k-centre: repeatedly take the candidate farthest from everything chosen so far.

    Args:
        emb: float [N, D] embeddings of all rows.
        n: how many to choose.
        candidates: row indices that may be chosen.
        labelled: rows already labelled (the distances start from them).
        groups: [N] slide (or image group) of each row, for `cap`.
        cap: at most this many per group (None: no cap).
    """
    x = _standardise(emb)
    cand = np.asarray(candidates, np.int64)
    if len(cand) == 0 or n <= 0:
        return np.zeros(0, np.int64)
    if labelled is not None and len(labelled):
        d = np.full(len(cand), np.inf)
        for s in range(0, len(labelled), 128):  # chunks bound the [cand, 128, D] temporary
            part = x[np.asarray(labelled)[s : s + 128]]
            d = np.minimum(d, ((x[cand, None, :] - part[None]) ** 2).sum(-1).min(1))
    else:
        d = ((x[cand] - x[cand].mean(0)) ** 2).sum(-1)  # nothing labelled: start far from the mean
    taken: dict[str, int] = {}
    chosen: list[int] = []
    alive = np.ones(len(cand), bool)
    while len(chosen) < n and alive.any():
        j = int(np.argmax(np.where(alive, d, -1.0)))
        alive[j] = False
        i = int(cand[j])
        g = None if groups is None else str(groups[i])
        if cap and g is not None and taken.get(g, 0) >= cap:
            continue
        if g is not None:
            taken[g] = taken.get(g, 0) + 1
        chosen.append(i)
        d = np.minimum(d, ((x[cand] - x[i]) ** 2).sum(-1))
    return np.asarray(chosen, np.int64)


def select_uncertain_diverse(
    probs: np.ndarray,
    emb: np.ndarray,
    budget: int,
    *,
    pool_factor: float = 4.0,
    kind: str = "margin",
    labelled: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    cap: int | None = None,
    samples: np.ndarray | None = None,
) -> np.ndarray:
    """The `budget` rows to label: k-centre greedy among the `pool_factor x budget` most uncertain.

    Uncertainty says where the model hesitates; k-centre greedy spreads the picks over the
    embedding space so a batch is not twenty copies of one hard region.
    """
    u = uncertainty(probs, kind, samples)
    order = np.argsort(-u, kind="stable")
    if labelled is not None and len(labelled):
        order = order[~np.isin(order, labelled)]
    pool = order[: max(budget, int(np.ceil(pool_factor * budget)))]
    return k_centre_greedy(emb, budget, pool, labelled, groups, cap)


def cold_start(
    features: np.ndarray,
    budget: int,
    seed: int = 0,
    groups: np.ndarray | None = None,
    cap: int | None = None,
) -> np.ndarray:
    """Typical and diverse rows without a model: the row nearest each k-means centre.

    k-means (k-means++ seeding) over colour/texture features with k = budget; each cluster gives
    its most central member (typical), and the clusters cover the data (diverse).
    """
    from sklearn.cluster import KMeans

    x = _standardise(features)
    k = int(min(budget, len(x)))
    if k <= 0:
        return np.zeros(0, np.int64)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x)
    d = ((x - km.cluster_centers_[km.labels_]) ** 2).sum(-1)
    order = np.lexsort((d, km.labels_))  # by cluster, then distance to the centre
    first = order[np.r_[True, np.diff(km.labels_[order]) != 0]]
    first = first[np.argsort(d[first], kind="stable")]
    chosen = _capped(first, groups, cap, k)
    if len(chosen) < k:  # the cap left clusters out: fill with the next most central rows
        rest = np.setdiff1d(np.argsort(d, kind="stable"), chosen, assume_unique=False)
        rest = rest[np.argsort(d[rest], kind="stable")]
        more = _capped(np.r_[chosen, rest], groups, cap, k)
        chosen = more
    return chosen
