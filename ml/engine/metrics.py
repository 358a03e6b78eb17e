"""Multi-label evaluation metrics in pure numpy.

``evaluate()`` returns plain Python numbers, lists and dicts (no numpy types, no NaN)
so the result can be stored as JSON as it is. A metric that is undefined for the
data (ROC AUC of a genre without positives or without negatives, PR AUC without
positives) is ``None`` and left out of the macro averages.

Conventions follow scikit-learn with ``zero_division=0``: a precision, recall or F1
whose denominator is zero counts as 0; PR AUC is average precision (the step-wise
sum, not the trapezoid); ROC AUC treats tied scores as half a win.
"""

from __future__ import annotations

import numpy as np

CURVE_POINTS = 50  # PR curves are downsampled to at most this many points
CALIBRATION_BINS = 10


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(tp: float, fp: float, fn: float) -> float:
    return _safe_div(2 * tp, 2 * tp + fp + fn)


def _check_inputs(y_true, probs, decisions, genres) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    d = np.asarray(decisions)
    if y.ndim != 2:
        raise ValueError(f"y_true must be a 2-D [n, genres] array, got shape {y.shape}")
    if p.shape != y.shape or d.shape != y.shape:
        raise ValueError(f"shapes differ: y_true {y.shape}, probs {p.shape}, decisions {d.shape}")
    if len(genres) != y.shape[1]:
        raise ValueError(f"{len(genres)} genre names for {y.shape[1]} columns")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if p.size and not np.isfinite(p).all():
        raise ValueError("probs contain NaN or infinite values")
    return y.astype(bool), p, d.astype(bool)


def micro_f1(y_true, decisions) -> float:
    """Micro-F1 of 0/1 ``decisions`` against 0/1 labels ``y_true`` (both [n, G]): the
    figure ``evaluate`` reports, without the rest (0 when there is no true positive)."""
    y = np.asarray(y_true).astype(bool)
    d = np.asarray(decisions).astype(bool)
    return _f1((y & d).sum(), (~y & d).sum(), (y & ~d).sum())


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities ``p`` against 0/1 labels ``y`` (clipped)."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # Start index of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U); None without both classes."""
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(np.asarray(scores, dtype=np.float64))
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def precision_recall_curve(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score used as threshold (``score >= t``).

    Returned in increasing-threshold order (so decreasing recall), like scikit-learn,
    without its artificial final (recall 0, precision 1) point.
    """
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], y[order]
    # Last index of each run of equal scores: predictions change only there.
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1] if len(s) else np.array([], dtype=int)
    tps = np.cumsum(t)[last].astype(np.float64)
    fps = (last + 1) - tps
    n_pos = float(t.sum())
    precision = tps / (tps + fps)
    recall = tps / n_pos if n_pos else np.zeros_like(tps)
    return precision[::-1], recall[::-1], s[last][::-1]


def average_precision(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision: sum over thresholds of (recall step) x precision; None without positives."""
    y = np.asarray(y, dtype=bool)
    if not y.any():
        return None
    precision, recall, _ = precision_recall_curve(y, scores)
    # Curves are in decreasing recall order; walk them from recall 0 upwards.
    p, r = precision[::-1], recall[::-1]
    steps = np.diff(np.r_[0.0, r])
    return float(np.sum(steps * p))


def _downsample(n: int, limit: int = CURVE_POINTS) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def pr_curve_points(y: np.ndarray, scores: np.ndarray, limit: int = CURVE_POINTS) -> dict:
    precision, recall, thresholds = precision_recall_curve(y, scores)
    keep = _downsample(len(precision), limit)
    return {
        "precision": [round(float(v), 6) for v in precision[keep]],
        "recall": [round(float(v), 6) for v in recall[keep]],
        "thresholds": [round(float(v), 6) for v in thresholds[keep]],
    }


def calibration_bins(y: np.ndarray, probs: np.ndarray, n_bins: int = CALIBRATION_BINS) -> dict:
    """Reliability diagram data and expected calibration error over all entries given.

    Bin i holds probabilities in [i/n, (i+1)/n) (the last bin includes 1.0).
    ECE = sum over bins of (bin share) x |fraction positive - mean probability|.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=p, minlength=n_bins)
    pos_sum = np.bincount(idx, weights=y, minlength=n_bins)
    mean_conf: list[float | None] = []
    frac_pos: list[float | None] = []
    ece = 0.0
    for c, cs, ps in zip(counts, conf_sum, pos_sum, strict=False):
        if c == 0:
            mean_conf.append(None)
            frac_pos.append(None)
            continue
        mean_conf.append(float(cs / c))
        frac_pos.append(float(ps / c))
        ece += (c / len(p)) * abs(ps / c - cs / c)
    return {
        "edges": [float(e) for e in edges],
        "count": [int(c) for c in counts],
        "mean_confidence": mean_conf,
        "fraction_positive": frac_pos,
        "ece": float(ece) if len(p) else None,
    }


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def evaluate(y_true, probs, decisions, genres: list[str]) -> dict:
    """All headline and per-genre metrics for a multi-label prediction.

    ``y_true`` [n, G] of 0/1, ``probs`` [n, G] scores in [0, 1], ``decisions``
    [n, G] bool (after thresholds), ``genres`` the G column names.
    """
    y, p, d = _check_inputs(y_true, probs, decisions, genres)
    n, g = y.shape
    tp = (y & d).sum(axis=0).astype(np.int64)
    fp = (~y & d).sum(axis=0).astype(np.int64)
    fn = (y & ~d).sum(axis=0).astype(np.int64)
    tn = (~y & ~d).sum(axis=0).astype(np.int64)
    support = tp + fn

    per_genre = []
    for j, name in enumerate(genres):
        per_genre.append(
            {
                "genre": name,
                "f1": _f1(tp[j], fp[j], fn[j]),
                "precision": _safe_div(tp[j], tp[j] + fp[j]),
                "recall": _safe_div(tp[j], tp[j] + fn[j]),
                "roc_auc": roc_auc(y[:, j], p[:, j]),
                "pr_auc": average_precision(y[:, j], p[:, j]),
                "support": int(support[j]),
                "tp": int(tp[j]),
                "fp": int(fp[j]),
                "fn": int(fn[j]),
                "tn": int(tn[j]),
                "pr_curve": pr_curve_points(y[:, j], p[:, j]),
                "calibration": calibration_bins(y[:, j], p[:, j]),
            }
        )

    f1s = np.array([row["f1"] for row in per_genre]) if g else np.zeros(0)
    total_support = int(support.sum())
    # Per-example F1: 2|true & pred| / (|true| + |pred|), 0 when both are empty.
    inter = (y & d).sum(axis=1)
    sizes = y.sum(axis=1) + d.sum(axis=1)
    samples_f1 = np.where(sizes > 0, 2 * inter / np.maximum(sizes, 1), 0.0)
    calibration = calibration_bins(y, p)

    return {
        "n_examples": int(n),
        "n_genres": int(g),
        "micro_f1": micro_f1(y, d),
        "macro_f1": float(f1s.mean()) if g else 0.0,
        "weighted_f1": _safe_div(float((f1s * support).sum()), total_support),
        "samples_f1": float(samples_f1.mean()) if n else 0.0,
        "micro_precision": _safe_div(tp.sum(), tp.sum() + fp.sum()),
        "micro_recall": _safe_div(tp.sum(), tp.sum() + fn.sum()),
        "macro_precision": float(np.mean([r["precision"] for r in per_genre])) if g else 0.0,
        "macro_recall": float(np.mean([r["recall"] for r in per_genre])) if g else 0.0,
        "hamming_accuracy": float((y == d).mean()) if y.size else 0.0,
        "subset_accuracy": float((y == d).all(axis=1).mean()) if n else 0.0,
        "roc_auc_macro": _mean_defined([r["roc_auc"] for r in per_genre]),
        "pr_auc_macro": _mean_defined([r["pr_auc"] for r in per_genre]),
        "ece": calibration["ece"],
        "calibration": calibration,
        "per_genre": per_genre,
    }
