"""The decision rule, in one place: logits → aggregated over views → calibrated P(AI) → label, uncertain.

Every door scores through :meth:`aivsreal.runtime.Detector.postprocess`, which calls these; metrics,
evaluation and export checks use :func:`is_ai`. ``web/src/decision.js`` is the JavaScript twin, held to
the same numbers by test vectors. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Several views of one image (TTA, patches) are combined by the mean of their logits, then calibrated.
AGGREGATION = "mean_logit"


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def aggregate(view_logits: Sequence[float] | np.ndarray) -> float:
    """One logit for an image from the logits of its views (see :data:`AGGREGATION`)."""
    z = np.asarray(view_logits, dtype=np.float64).reshape(-1)
    if z.size == 0:
        raise ValueError("no view logits to aggregate")
    return float(np.mean(z))


def calibrate(logits: np.ndarray | float, temperature: float) -> np.ndarray:
    """Calibrated P(AI) = sigmoid(logit / temperature)."""
    return sigmoid(np.asarray(logits, dtype=np.float64) / float(temperature))


def is_ai(scores: np.ndarray | float, threshold: float) -> np.ndarray:
    """The rule: a score at or above the threshold is called AI-generated."""
    return np.asarray(scores, dtype=np.float64) >= float(threshold)


def is_uncertain(scores: np.ndarray | float, threshold: float, band: float) -> np.ndarray:
    """Scores closer to the threshold than the card's band are flagged uncertain."""
    return np.abs(np.asarray(scores, dtype=np.float64) - float(threshold)) < float(band)


def decide(score: float, threshold: float, band: float, labels: Sequence[str]) -> tuple[str, bool]:
    """(label, uncertain) of one calibrated score; ``labels`` = (negative, positive)."""
    return (labels[1] if bool(is_ai(score, threshold)) else labels[0]), bool(
        is_uncertain(score, threshold, band)
    )


def check_threshold(threshold: float | None) -> float | None:
    """A threshold override must lie in (0, 1); None means the card's."""
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold {threshold} must lie in (0, 1)")
    return None if threshold is None else float(threshold)
