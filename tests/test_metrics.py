"""Metric values against hand-computed cases (and scikit-learn where it defines the same thing)."""

from __future__ import annotations

import numpy as np
import pytest

from aivsreal.metrics import (
    average_precision,
    binary_metrics,
    ece,
    fit_temperature,
    roc_auc,
    sigmoid,
    threshold_for_fpr,
)


def test_binary_metrics_hand_computed():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.3, 0.8, 0.7, 0.4, 0.9])
    m = binary_metrics(y, p, 0.5)
    # tn=3 (0.1,0.2,0.3) fp=1 (0.6) fn=1 (0.4) tp=3
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # AUC: of 16 (pos, neg) pairs, the pos score is higher in 15 (0.4 < 0.6 is the only miss)
    assert m["roc_auc"] == pytest.approx(15 / 16)


def test_auc_ties_count_half():
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([0, 0, 1], [0.2, 0.5, 0.5]) == pytest.approx(0.75)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_average_precision_hand_computed():
    # ranking: 0.9(+) 0.8(-) 0.7(+) 0.1(-) → AP = 0.5*1 + 0.5*(2/3)
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 1 / 3)


def test_metrics_match_sklearn_on_random_data():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).round(2)  # rounding makes ties
    assert roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p))
    assert average_precision(y, p) == pytest.approx(sk.average_precision_score(y, p))
    m = binary_metrics(y, p, 0.5)
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p >= 0.5))
    assert m["f1"] == pytest.approx(sk.f1_score(y, p >= 0.5))


def test_ece_hand_computed():
    # two bins used: (0.2: 1 of 2 correct-class=1 → acc .5, conf .2) and (0.9: both 1 → acc 1, conf .9)
    y = np.array([0, 1, 1, 1])
    p = np.array([0.2, 0.2, 0.9, 0.9])
    assert ece(y, p) == pytest.approx(0.5 * 0.3 + 0.5 * 0.1)
    assert ece(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(0.0)


def test_threshold_for_fpr_keeps_false_positives_under_target():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(200), np.ones(100)].astype(int)
    p = np.r_[rng.uniform(0, 0.8, 200), rng.uniform(0.3, 1, 100)]
    for target in (0.0, 0.03, 0.1):
        t = threshold_for_fpr(y, p, target)
        fpr = np.mean(p[y == 0] >= t)
        assert fpr <= target
        # and it is the lowest such threshold: a bit lower lets one more real through
        assert np.mean(p[y == 0] >= np.nextafter(t, -np.inf) - 1e-9) > target or t <= p[y == 0].min()


def test_temperature_fit_recovers_known_scale():
    rng = np.random.default_rng(2)
    true_logit = rng.normal(0, 2, 4000)
    y = (rng.uniform(size=4000) < sigmoid(true_logit)).astype(int)
    t = fit_temperature(y, true_logit * 3.0)  # overconfident by 3x
    assert t == pytest.approx(3.0, rel=0.15)
