"""Seed statistics for the report: means with Student-t confidence intervals.

Each benchmark number is a mean over a handful of training seeds, so the interval uses
the t distribution with n - 1 degrees of freedom rather than a normal approximation.
Comparisons between two methods are *paired* by seed: runs with the same seed share
data order and initialisation choices, and pairing removes that shared variance. NaN
values propagate (a NaN seed makes the summary NaN) instead of being silently dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(
    values: np.ndarray | list[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, lo, hi) of the two-sided t interval; NaN bounds when n == 1."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return mean, float(mean - half), float(mean + half)


def paired_difference_ci(
    a_by_seed: dict[int, float], b_by_seed: dict[int, float], confidence: float = 0.95
) -> tuple[float, float, float, int]:
    """(mean of a - b, lo, hi, n) over the seeds both methods have."""
    a, b = _shared(a_by_seed, b_by_seed)
    return (*mean_ci(a - b, confidence), int(a.size))


def relative_gain_ci(
    a_by_seed: dict[int, float], b_by_seed: dict[int, float], confidence: float = 0.95
) -> tuple[float, float, float, int]:
    """(mean of (a - b) / |b|, lo, hi, n) over shared seeds: a's gain relative to b."""
    a, b = _shared(a_by_seed, b_by_seed)
    if (b == 0).any():
        raise ValueError("relative gain is undefined where the reference value b is 0")
    return (*mean_ci((a - b) / np.abs(b), confidence), int(a.size))


def _shared(a_by_seed: dict[int, float], b_by_seed: dict[int, float]) -> tuple[np.ndarray, ...]:
    seeds = sorted(set(a_by_seed) & set(b_by_seed))
    if not seeds:
        raise ValueError(f"no seed in common: a has {sorted(a_by_seed)}, b has {sorted(b_by_seed)}")
    a = np.array([a_by_seed[s] for s in seeds], dtype=np.float64)
    b = np.array([b_by_seed[s] for s in seeds], dtype=np.float64)
    return a, b
