import numpy as np
import pytest

from ml.engine.thresholds import apply_thresholds, tune_thresholds


def test_tune_picks_f1_optimal_threshold_per_genre():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    p = np.array([[0.30, 0.9], [0.25, 0.8], [0.20, 0.7], [0.10, 0.6]])
    t = tune_thresholds(y, p, grid=[0.15, 0.22, 0.28, 0.5, 0.65, 0.75])
    # Genre 0: t=0.22 predicts exactly the two positives -> F1 1.
    # Genre 1: the one positive (0.7) scores below two negatives; t=0.65 predicts
    # 3 rows (F1 2/4), any t<=0.6 predicts all 4 (F1 2/5), t=0.75 misses it (F1 0).
    assert t[0] == pytest.approx(0.22)
    assert t[1] == pytest.approx(0.65)


def test_ties_prefer_threshold_near_half_and_no_positive_genre_keeps_default():
    y = np.array([[1, 0], [0, 0]])
    p = np.array([[0.9, 0.3], [0.1, 0.2]])
    t = tune_thresholds(y, p, grid=[0.2, 0.4, 0.6, 0.8])
    assert t[0] == pytest.approx(0.4)  # 0.2..0.8 all give F1 1; 0.4 and 0.6 tie on distance, first wins
    assert t[1] == pytest.approx(0.5)


def test_apply_thresholds_keeps_top_genre():
    p = np.array([[0.2, 0.4, 0.1], [0.6, 0.7, 0.1]])
    d = apply_thresholds(p, np.array([0.5, 0.5, 0.5]))
    assert d.tolist() == [[False, True, False], [True, True, False]]
    d = apply_thresholds(p, np.array([0.5, 0.5, 0.5]), min_one=False)
    assert d.tolist() == [[False, False, False], [True, True, False]]


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        apply_thresholds(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError):
        tune_thresholds(np.zeros((2, 3)), np.zeros((3, 3)))


def test_half_best_f1_rule_sets_each_threshold_at_half_the_best_val_f1():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    p = np.array([[0.30, 0.9], [0.25, 0.8], [0.20, 0.7], [0.10, 0.6]])
    grid = [0.15, 0.22, 0.28, 0.5, 0.65, 0.75]
    # genre 0 reaches F1 1 (threshold 0.5), genre 1 at best 2/4 (t=0.65: tp 1, fp 2): 0.25
    t = tune_thresholds(y, p, grid=grid, rule="half-best-f1")
    assert t.tolist() == pytest.approx([0.5, 0.25])
    # a genre nobody has keeps 0.5; the threshold stays inside the grid's range
    t = tune_thresholds(
        np.array([[1, 0], [0, 0]]), np.array([[0.9, 0.3], [0.1, 0.2]]), grid=[0.6, 0.8], rule="half-best-f1"
    )
    assert t.tolist() == pytest.approx([0.6, 0.5])
    with pytest.raises(ValueError, match="rule"):
        tune_thresholds(y, p, rule="median")


def test_a_config_names_its_threshold_rule():
    from ml.engine.registry import RECOMMENDED_PRESET, get_config

    assert get_config(RECOMMENDED_PRESET).decision_thresholds == "half-best-f1"
    assert get_config("minilm-frozen-text").decision_thresholds == "tuned"
    with pytest.raises(ValueError, match="decision_thresholds"):
        get_config({"preset": "minilm-frozen-text", "decision_thresholds": "median"})
