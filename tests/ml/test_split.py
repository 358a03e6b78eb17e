import numpy as np
import pytest

from ml.engine.split import iterative_stratified_split


def _label_matrix(n=600, g=6, seed=1):
    rng = np.random.default_rng(seed)
    rates = np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.02])[:g]
    return (rng.random((n, g)) < rates).astype(int)


def test_proportions_overall_and_per_label():
    y = _label_matrix()
    split = iterative_stratified_split(y, (0.7, 0.15, 0.15), seed=5)
    assert set(split) == {"train", "val", "test"}
    for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert abs((split == name).mean() - frac) < 0.02
        in_subset = y[split == name].sum(axis=0)
        expected = y.sum(axis=0) * frac
        # Each label's count is within 1.5 examples of its quota (rounding only).
        assert np.all(np.abs(in_subset - expected) <= 1.5), (name, in_subset, expected)


def test_rare_label_reaches_every_subset():
    y = np.zeros((100, 2), dtype=int)
    y[:, 0] = 1
    y[:3, 1] = 1  # three examples: one per subset at 1/3 each
    split = iterative_stratified_split(y, (1 / 3, 1 / 3, 1 / 3), seed=0)
    assert sorted(split[:3]) == ["test", "train", "val"]


def test_deterministic_for_a_seed_and_varies_with_seed():
    y = _label_matrix(n=300)
    a = iterative_stratified_split(y, seed=7)
    assert (a == iterative_stratified_split(y, seed=7)).all()
    assert (a != iterative_stratified_split(y, seed=8)).any()


def test_unlabelled_rows_and_zero_fraction():
    y = np.zeros((10, 2), dtype=int)
    split = iterative_stratified_split(y, (0.8, 0.2, 0.0), seed=0)
    assert (split == "train").sum() == 8 and (split == "val").sum() == 2
    assert len(iterative_stratified_split(np.zeros((0, 3)), seed=0)) == 0


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError):
        iterative_stratified_split(np.zeros((3, 2)), (0.5, 0.5))
    with pytest.raises(ValueError):
        iterative_stratified_split(np.zeros((3, 2)), (0.7, 0.2, 0.2))
