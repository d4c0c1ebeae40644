"""Predictable vs unpredictable neurons (POYO-SSL's data diet).

POYO-SSL separates statistically regular neurons (near-Gaussian traces) from sparse,
bursty, stimulus-contingent ones by the skewness and excess kurtosis of each trace,
with thresholds at the knee of the sorted scores (the paper reports skewness 3.51 and
kurtosis 22.62 on Allen data). Scores are computed on training windows only, so the
selection cannot leak validation or test data into pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    skewness: float
    kurtosis: float
    source: str  # "knee" or "config"


def trace_moments(activity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron skewness and excess (Fisher) kurtosis of activity [T, N].

    A constant trace has no defined shape; it gets 0 for both, i.e. counts as regular.
    """
    # Imported here: the workflow imports this module (through the split config) when it
    # plans, and scipy.stats would add about a second to every `snakemake` start.
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        skew = stats.skew(activity, axis=0, bias=False)
        kurt = stats.kurtosis(activity, axis=0, fisher=True, bias=False)
    return np.nan_to_num(skew), np.nan_to_num(kurt)


def knee_threshold(scores: np.ndarray) -> float:
    """The knee of the ascending sorted scores (Kneedle for a convex, increasing curve).

    Both axes are scaled to [0, 1]; the knee is the sorted point farthest below the
    chord from the first to the last point, i.e. where the flat body of regular neurons
    bends into the heavy tail. Returns the score at the knee (inclusive threshold).
    """
    values = np.sort(np.asarray(scores, dtype=np.float64))
    if values.size < 3 or values[-1] == values[0]:
        return float(values[-1]) if values.size else float("nan")
    x = np.linspace(0.0, 1.0, values.size)
    y = (values - values[0]) / (values[-1] - values[0])
    return float(values[int(np.argmax(x - y))])


def choose_thresholds(
    skew: np.ndarray,
    kurt: np.ndarray,
    skewness_override: float | None = None,
    kurtosis_override: float | None = None,
) -> Thresholds:
    """Knee thresholds unless the config fixes them (both or none may be overridden)."""
    if (skewness_override is None) != (kurtosis_override is None):
        raise ValueError("set both skewness_threshold and kurtosis_threshold, or neither")
    if skewness_override is not None and kurtosis_override is not None:
        return Thresholds(float(skewness_override), float(kurtosis_override), "config")
    return Thresholds(knee_threshold(skew), knee_threshold(kurt), "knee")


def is_predictable(skew: np.ndarray, kurt: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    return (skew <= thresholds.skewness) & (kurt <= thresholds.kurtosis)


def precision_recall(selected: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a boolean selection against planted ground truth."""
    selected, truth = selected.astype(bool), truth.astype(bool)
    hits = float(np.sum(selected & truth))
    precision = hits / selected.sum() if selected.any() else float("nan")
    recall = hits / truth.sum() if truth.any() else float("nan")
    return precision, recall
