"""Train/val/test split for multi-label data by iterative stratification.

Sechidis, Tsoumakas & Vlahavas (2011), "On the stratification of multi-label data":
repeatedly take the label with the fewest examples still unassigned and hand each of
its examples to the subset that most lacks that label (ties: the subset that most
lacks examples overall, then a seeded random pick). Examples without labels go to
the subset with the largest remaining quota. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

SUBSET_NAMES = ("train", "val", "test")
# The one set of split defaults: the benchmark's split and the platform's dataset snapshots
# (ml.services.snapshots.build_snapshot) both start from these, so the default training
# path reproduces the benchmark's setup.
DEFAULT_SEED = 0
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
# Genres with fewer movies are reported and left out (too few to learn or to score).
DEFAULT_MIN_GENRE_COUNT = 20


def _check_fractions(fractions) -> np.ndarray:
    r = np.asarray(fractions, dtype=np.float64)
    if r.shape != (3,):
        raise ValueError(f"fractions must be (train, val, test), got {fractions!r}")
    if (r < 0).any() or not np.isclose(r.sum(), 1.0, atol=1e-6):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions!r}")
    return r / r.sum()


def iterative_stratified_split(y, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Assign each row of the [n, G] 0/1 label matrix ``y`` to "train", "val" or "test"."""
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"y must be a 2-D [n, genres] array, got shape {y.shape}")
    r = _check_fractions(fractions)
    n = y.shape[0]
    result = np.empty(n, dtype="<U5")
    if n == 0:
        return result
    y = y.astype(bool)
    rng = np.random.default_rng(seed)
    # A seeded shuffle decides the order within each label, so the seed matters
    # beyond tie-breaks and the input order does not bias which rows land where.
    order = rng.permutation(n)
    usable = r > 0  # a subset asked to hold nothing never receives an example
    subset_quota = r * n  # examples each subset still wants
    label_quota = r[:, None] * y.sum(axis=0)[None, :].astype(np.float64)  # [3, G]
    assigned = np.full(n, -1, dtype=np.int64)
    remaining_per_label = y.sum(axis=0).astype(np.int64)

    def pick_subset(candidates_score: np.ndarray) -> int:
        scores = np.where(usable, candidates_score, -np.inf)
        best = np.flatnonzero(scores == scores.max())
        if len(best) > 1:
            tie = subset_quota[best]
            best = best[tie == tie.max()]
        return int(best[0] if len(best) == 1 else rng.choice(best))

    # Rows of each label in the shuffled order, for the label-by-label loop.
    shuffled = y[order]
    while remaining_per_label.sum() > 0:
        live = np.flatnonzero(remaining_per_label > 0)
        label = int(live[np.argmin(remaining_per_label[live])])
        rows = order[shuffled[:, label]]
        for row in rows:
            if assigned[row] >= 0:
                continue
            subset = pick_subset(label_quota[:, label])
            assigned[row] = subset
            labels = y[row]
            label_quota[subset, labels] -= 1
            subset_quota[subset] -= 1
            remaining_per_label[labels] -= 1
    for row in order[assigned[order] < 0]:
        subset = pick_subset(subset_quota)
        assigned[row] = subset
        subset_quota[subset] -= 1
    result[:] = np.asarray(SUBSET_NAMES)[assigned]
    return result
