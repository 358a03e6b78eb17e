"""ml.engine.metrics against hand-computed values and scikit-learn (tests only)."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from ml.engine.metrics import average_precision, calibration_bins, evaluate, micro_f1, roc_auc

# 4 movies x 3 genres, small enough to check on paper.
Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
P = np.array([[0.9, 0.2, 0.6], [0.3, 0.8, 0.4], [0.4, 0.7, 0.1], [0.6, 0.1, 0.3]])
D = P >= 0.5  # [[1,0,1],[0,1,0],[0,1,0],[1,0,0]]
GENRES = ["Action", "Comedy", "Drama"]


def test_counts_and_f1_by_hand():
    result = evaluate(Y, P, D, GENRES)
    action, comedy, drama = result["per_genre"]
    # Action: true rows 0,2; predicted rows 0,3 -> tp1 fp1 fn1 tn1.
    assert (action["tp"], action["fp"], action["fn"], action["tn"]) == (1, 1, 1, 1)
    assert action["precision"] == 0.5 and action["recall"] == 0.5 and action["f1"] == 0.5
    # Comedy: true 1,2; predicted 1,2 -> perfect.
    assert comedy["f1"] == 1.0 and comedy["support"] == 2
    # Drama: true 0,3; predicted 0 -> tp1 fn1 -> P 1, R 0.5, F1 2/3.
    assert drama["precision"] == 1.0 and drama["recall"] == 0.5
    assert drama["f1"] == pytest.approx(2 / 3)
    # Micro: tp 4, fp 1, fn 2 -> F1 = 8 / 11 (micro_f1 alone is what training selects epochs on).
    assert result["micro_f1"] == pytest.approx(8 / 11)
    assert micro_f1(Y, D) == pytest.approx(8 / 11)
    assert micro_f1(Y, np.zeros_like(D)) == 0.0 and micro_f1(np.zeros_like(Y), np.zeros_like(D)) == 0.0
    assert result["micro_precision"] == pytest.approx(4 / 5)
    assert result["micro_recall"] == pytest.approx(4 / 6)
    assert result["macro_f1"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    # Hamming: 9 of 12 cells right; subset: rows 0 and 1 exactly right.
    assert result["hamming_accuracy"] == pytest.approx(9 / 12)
    assert result["subset_accuracy"] == 0.5
    # Samples F1: row0 1, row1 1, row2 2*1/(2+1), row3 0.
    assert result["samples_f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)


def test_auc_by_hand():
    # Action positives score 0.9, 0.4; negatives 0.3, 0.6 -> pairs won: (0.9>0.3, 0.9>0.6, 0.4>0.3) = 3/4.
    assert roc_auc(Y[:, 0], P[:, 0]) == pytest.approx(0.75)
    # Ties count half: one positive, one negative with equal score.
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None
    # AP for Action: ranked 0.9(+) 0.6(-) 0.4(+) 0.3(-) -> 0.5*1 + 0.5*(2/3).
    assert average_precision(Y[:, 0], P[:, 0]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision(np.array([0, 0]), np.array([0.1, 0.2])) is None


def test_matches_sklearn_on_random_data():
    rng = np.random.default_rng(3)
    y = (rng.random((200, 6)) < 0.3).astype(int)
    probs = np.clip(0.5 * y + rng.random((200, 6)) * 0.6, 0, 1).round(2)  # rounding makes ties
    decisions = probs >= 0.45
    result = evaluate(y, probs, decisions, [f"g{i}" for i in range(6)])
    kw = dict(zero_division=0)
    assert result["micro_f1"] == pytest.approx(skm.f1_score(y, decisions, average="micro", **kw))
    assert micro_f1(y, decisions) == pytest.approx(skm.f1_score(y, decisions, average="micro", **kw))
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y, decisions, average="macro", **kw))
    assert result["weighted_f1"] == pytest.approx(skm.f1_score(y, decisions, average="weighted", **kw))
    assert result["samples_f1"] == pytest.approx(skm.f1_score(y, decisions, average="samples", **kw))
    assert result["macro_precision"] == pytest.approx(skm.precision_score(y, decisions, average="macro", **kw))
    assert result["macro_recall"] == pytest.approx(skm.recall_score(y, decisions, average="macro", **kw))
    assert result["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, decisions))
    assert result["hamming_accuracy"] == pytest.approx(1 - skm.hamming_loss(y, decisions))
    assert result["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs, average="macro"))
    assert result["pr_auc_macro"] == pytest.approx(skm.average_precision_score(y, probs, average="macro"))
    for j, row in enumerate(result["per_genre"]):
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, j], probs[:, j]))
        assert row["pr_auc"] == pytest.approx(skm.average_precision_score(y[:, j], probs[:, j]))
        assert len(row["pr_curve"]["precision"]) <= 50


def test_calibration_and_ece_by_hand():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 1.0])
    bins = calibration_bins(y, p, n_bins=10)
    assert bins["count"][0] == 2 and bins["count"][9] == 2
    assert bins["fraction_positive"][0] == 0.5 and bins["mean_confidence"][0] == pytest.approx(0.05)
    assert bins["mean_confidence"][5] is None
    # ECE = 0.5*|0.5-0.05| + 0.5*|1-0.975| = 0.2375
    assert bins["ece"] == pytest.approx(0.2375)


def test_undefined_metrics_are_none_and_result_is_json():
    y = np.array([[1, 0], [1, 0]])  # genre 1 has no positives, genre 0 no negatives
    p = np.array([[0.7, 0.2], [0.6, 0.1]])
    result = evaluate(y, p, p >= 0.5, ["A", "B"])
    assert result["roc_auc_macro"] is None
    assert result["per_genre"][1]["pr_auc"] is None and result["per_genre"][0]["pr_auc"] == 1.0
    json.dumps(result, allow_nan=False)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate(Y, P[:2], D, GENRES)
    with pytest.raises(ValueError, match="genre names"):
        evaluate(Y, P, D, GENRES[:2])
    with pytest.raises(ValueError, match="only 0 and 1"):
        evaluate(Y * 2, P, D, GENRES)
