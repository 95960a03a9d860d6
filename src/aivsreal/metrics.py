"""Metrics, threshold choice and temperature calibration on (labels, scores). numpy only.

Kept torch- and sklearn-free so the runtime, the server and the evaluator share one definition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .decision import is_ai, sigmoid  # noqa: F401  (sigmoid re-exported for older imports)


def confusion(y: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    return {
        "tn": int(((y == 0) & (pred == 0)).sum()),
        "fp": int(((y == 0) & (pred == 1)).sum()),
        "fn": int(((y == 1) & (pred == 0)).sum()),
        "tp": int(((y == 1) & (pred == 1)).sum()),
    }


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties); NaN with one class."""
    y, s = np.asarray(y).astype(int), np.asarray(s, dtype=np.float64)
    n1, n0 = int(y.sum()), int((1 - y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """AP = Σ (R_k − R_{k−1}) P_k over distinct score thresholds (as scikit-learn defines it)."""
    y, s = np.asarray(y).astype(int), np.asarray(s, dtype=np.float64)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, from the highest threshold down."""
    y, s = np.asarray(y).astype(int), np.asarray(s, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    P, N = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    return np.r_[0.0, fp / N], np.r_[0.0, tp / P], np.r_[np.inf, s[distinct]]


def pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y).astype(int), np.asarray(s, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    precision = tp / (distinct + 1)
    recall = tp / max(int(y.sum()), 1)
    return np.r_[1.0, precision], np.r_[0.0, recall]


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of P(AI) over equal-width bins (weighted |accuracy − confidence|)."""
    y, p = np.asarray(y).astype(float), np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return float("nan")
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Every headline metric for labels ``y`` (1 = AI) and scores ``p`` = P(AI)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    pred = is_ai(p, threshold).astype(int)
    c = confusion(y, pred)
    tp, tn, fp, fn = c["tp"], c["tn"], c["fp"], c["fn"]
    n = max(len(y), 1)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    f1 = (
        2 * precision * recall / (precision + recall)
        if (precision + recall) and not math.isnan(recall)
        else 0.0
    )
    bal = (
        np.nanmean([recall, specificity])
        if not (math.isnan(recall) and math.isnan(specificity))
        else float("nan")
    )
    return {
        "n": int(len(y)),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": f1,
        "balanced_accuracy": float(bal),
        "roc_auc": roc_auc(y, p),
        "average_precision": average_precision(y, p),
        "ece": ece(y, p),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def threshold_for_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on real images (y == 0) stays ≤ max_fpr."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    real = np.sort(p[y == 0])
    if len(real) == 0:
        return 0.5
    k = int(math.floor(max_fpr * len(real)))  # at most k real scores may be ≥ threshold
    if k >= len(real):
        return float(real[0])
    # strictly above the (k+1)-th highest real score
    cut = real[len(real) - k - 1]
    return float(np.nextafter(cut, np.inf))


def fit_temperature(y: np.ndarray, logits: np.ndarray) -> float:
    """Temperature T minimising the NLL of sigmoid(logit / T) (golden-section search on log T)."""
    y, z = np.asarray(y).astype(float), np.asarray(logits, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        q = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0, q) - y * q))

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(math.exp((lo + hi) / 2))
