"""The audit core (ml.engine.audit) on synthetic data with planted label errors: the
cross-fit never scores a movie with a head that saw its labels, confident learning finds
the planted errors (rare genre included) without flooding, and the ranking puts them first."""

from __future__ import annotations

import numpy as np
import pytest

from ml.engine import audit as engine_audit

GENRES = ["Action", "Comedy", "Drama", "Horror", "Western"]


def synthetic(n=500, seed=0, rare=25):
    """Features that reveal each movie's true genres (plus noise); Western is rare."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, len(GENRES)), dtype=bool)
    for i in range(n):
        if i < rare:
            y[i, 4] = True
        else:
            y[i, rng.integers(0, 4)] = True
        if rng.random() < 0.3:
            y[i, rng.integers(0, 4)] = True
    x = np.concatenate([y * 4.0 + rng.normal(0, 0.8, y.shape), rng.normal(0, 1, (n, 11))], axis=1)
    return x.astype(np.float32), y


def plant(y, seed=1, n_drop=15, n_add=15):
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    planted = set()
    multi = [i for i in range(len(y)) if y[i].sum() > 1]
    for i in rng.choice(multi, n_drop, replace=False):
        j = int(rng.choice(np.flatnonzero(y[i])))
        noisy[i, j] = False
        planted.add((int(i), j))
    # include the rare genre among the added errors, and a dropped rare label
    candidates = [i for i in range(len(y)) if not any((i, j) in planted for j in range(len(GENRES)))]
    for t, i in enumerate(rng.choice(candidates, n_add, replace=False)):
        j = 4 if t < 3 else int(rng.choice(np.flatnonzero(~y[i, :4])))
        if noisy[i, j]:
            continue
        noisy[i, j] = True
        planted.add((int(i), j))
    return noisy, planted


def test_assign_folds_spreads_every_genre():
    _, y = synthetic()
    folds = engine_audit.assign_folds(y, 5, seed=3)
    assert set(folds) == set(range(5))
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    for j in range(len(GENRES)):
        per_fold = np.bincount(folds[y[:, j]], minlength=5)
        # the rarest genre of each movie is dealt out exactly; others stay close
        tolerance = 1 if j == 4 else max(2, 0.2 * per_fold.mean())
        assert per_fold.max() - per_fold.min() <= tolerance, (GENRES[j], per_fold)


def test_no_movie_is_scored_by_a_head_that_saw_it(monkeypatch):
    x, y = synthetic(n=200)
    x = np.concatenate([np.arange(len(x), dtype=np.float32)[:, None], x], axis=1)  # column 0: row id
    labeled = np.ones(len(x), dtype=bool)
    labeled[-20:] = False
    y[-20:] = False
    real = engine_audit.fit_head
    calls = []

    def spy(features, labels, l2, *args, **kwargs):
        seen = set(features[:, 0].astype(int).tolist())
        score = real(features, labels, l2, *args, **kwargs)

        def scored(rows, *more):
            calls.append((seen, set(rows[:, 0].astype(int).tolist())))
            return score(rows, *more)

        return scored

    monkeypatch.setattr(engine_audit, "fit_head", spy)
    probs, fold, _ = engine_audit.cross_fit(x, y, labeled, folds=4, l2_grid=(1e-2,))
    assert len(calls) == 5  # 4 folds + the all-labels head for the unlabeled movies
    scored_labeled = set()
    for seen, scored in calls:
        assert not (seen & scored), "a head scored a movie it was trained on"
        scored_labeled |= scored & set(np.flatnonzero(labeled).tolist())
    assert scored_labeled == set(np.flatnonzero(labeled).tolist())  # every labeled movie scored once
    assert (fold[~labeled] == -1).all() and set(fold[labeled]) == set(range(4))
    assert probs.shape == y.shape and ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.slow
def test_planted_errors_are_found_and_ranked_first():
    x, y = synthetic()
    noisy, planted = plant(y)
    result = engine_audit.audit(x, noisy, noisy.any(axis=1), GENRES, folds=5, seed=0)
    flagged = {(int(r), int(c)) for r, c in np.argwhere(result.flagged)}
    assert len(flagged & planted) >= 0.7 * len(planted)
    assert len(flagged & planted) >= 0.8 * len(flagged)  # precision
    # no flood: far fewer flagged pairs than movies
    assert len(flagged) <= 3 * len(planted)
    # the rare genre neither floods nor vanishes: its planted errors are found
    rare_planted = {p for p in planted if p[1] == 4}
    assert rare_planted and rare_planted <= flagged
    assert sum(1 for p in flagged if p[1] == 4) <= 3 * len(rare_planted) + 2
    top = [tuple(map(int, p)) for p in engine_audit.ranked_pairs(result, noisy)[: len(planted)]]
    assert len(set(top) & planted) >= 0.8 * len(planted)
    # kinds agree with the thresholds: missing pairs score above, wrong pairs below
    for r, c in flagged:
        above = result.probs[r, c] >= result.thresholds[c]
        assert above == (not noisy[r, c])


@pytest.mark.slow
def test_clean_labels_give_few_issues():
    x, y = synthetic(seed=5)
    result = engine_audit.audit(x, y, y.any(axis=1), GENRES, folds=5)
    assert result.flagged.sum() <= 0.02 * y.size
    assert engine_audit.queue_issues(result).any(axis=1).mean() <= 0.1


def test_audit_refuses_too_few_movies():
    x, y = synthetic(n=3)
    with pytest.raises(ValueError, match="folds"):
        engine_audit.audit(x, y, y.any(axis=1), GENRES, folds=5)
