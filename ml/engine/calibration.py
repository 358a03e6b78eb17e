"""Per-genre probability calibration, fitted on validation logits (pure numpy).

"temperature": p = sigmoid(a * logit) with one scale ``a`` per genre; "platt": p =
sigmoid(a * logit + b) with a scale and a bias per genre (it also undoes the upward shift
that positive-class loss weights give every genre's scores). Both keep each genre's
ranking, so ROC AUC is unchanged; thresholds are tuned afterwards on the calibrated
probabilities. The fit minimises the binary cross-entropy of each genre's column by
damped Newton steps, with a small pull towards the identity (a=1, b=0) so that a genre with a
handful of validation positives cannot end up with an extreme scale. With fewer than
``MIN_EXAMPLES`` validation movies nothing is calibrated, and a genre with fewer than
``MIN_POSITIVES`` positives keeps its raw scores.
"""

from __future__ import annotations

import numpy as np

METHODS = ("none", "temperature", "platt")
# Below these, a fit would follow noise: fewer validation examples leave every genre as it
# is, fewer positives of a genre leave that genre as it is.
MIN_EXAMPLES = 30
MIN_POSITIVES = 3
# Strength of the pull towards a=1, b=0, in units of validation examples.
PRIOR_WEIGHT = 1.0
NEWTON_STEPS = 50


def identity(n_genres: int) -> dict:
    return {"method": "none", "scale": [1.0] * n_genres, "bias": [0.0] * n_genres}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _loss(z, y, a, b, lam) -> float:
    x = a * z + b
    # mean BCE with logits, computed stably: log(1 + e^x) - y x
    return float(np.mean(np.logaddexp(0.0, x) - y * x)) + 0.5 * lam * ((a - 1) ** 2 + b**2)


def _fit_column(z: np.ndarray, y: np.ndarray, with_bias: bool) -> tuple[float, float]:
    """Damped Newton on mean BCE(sigmoid(a z + b), y) + prior/n * ((a-1)^2 + b^2) / 2."""
    n = len(z)
    lam = PRIOR_WEIGHT / max(n, 1)
    a, b = 1.0, 0.0
    loss = _loss(z, y, a, b, lam)
    for _ in range(NEWTON_STEPS):
        p = _sigmoid(a * z + b)
        r = p - y
        w = p * (1 - p)
        grad_a = float(np.mean(r * z)) + lam * (a - 1)
        h_aa = float(np.mean(w * z * z)) + lam
        if with_bias:
            grad_b = float(np.mean(r)) + lam * b
            h_ab = float(np.mean(w * z))
            h_bb = float(np.mean(w)) + lam
            det = h_aa * h_bb - h_ab * h_ab
            if det <= 1e-12:
                break
            da = (h_bb * grad_a - h_ab * grad_b) / det
            db = (h_aa * grad_b - h_ab * grad_a) / det
        else:
            da, db = grad_a / h_aa, 0.0
        # Backtracking: take the largest step (1, 1/2, 1/4, ...) that lowers the loss.
        step = 1.0
        while step > 1e-6:
            new_a, new_b = a - step * da, b - step * db
            new_loss = _loss(z, y, new_a, new_b, lam)
            if new_loss <= loss:
                break
            step /= 2
        else:
            break
        converged = loss - new_loss < 1e-12
        a, b, loss = new_a, new_b, new_loss
        if converged:
            break
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0:
        return 1.0, 0.0  # never invert or break a genre's ranking
    return float(a), float(b)


def fit_calibration(logits, y_true, method: str) -> dict:
    """Per-genre calibration of ``logits`` [n, G] against 0/1 ``y_true`` [n, G]."""
    if method not in METHODS:
        raise ValueError(f"calibration must be one of {', '.join(METHODS)}, got {method!r}")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.float64)
    if z.shape != y.shape or z.ndim != 2:
        raise ValueError(f"logits and labels must be 2-D arrays of the same shape, got {z.shape} and {y.shape}")
    result = identity(z.shape[1])
    if method == "none" or len(z) < MIN_EXAMPLES:
        return result
    result["method"] = method
    for j in range(z.shape[1]):
        if y[:, j].sum() < MIN_POSITIVES:
            continue
        a, b = _fit_column(np.clip(z[:, j], -30, 30), y[:, j], with_bias=method == "platt")
        result["scale"][j], result["bias"][j] = a, b
    return result


def apply_calibration(logits, calibration: dict | None) -> np.ndarray:
    """Calibrated probabilities (float32) of ``logits`` [n, G]."""
    z = np.asarray(logits, dtype=np.float64)
    if calibration is not None and calibration.get("method", "none") != "none":
        z = z * np.asarray(calibration["scale"], dtype=np.float64) + np.asarray(calibration["bias"], dtype=np.float64)
    return _sigmoid(z).astype(np.float32)
