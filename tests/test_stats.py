"""Seed statistics against scipy.stats directly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from neurossl.eval.stats import mean_ci, paired_difference_ci, relative_gain_ci


def test_mean_ci_matches_scipy_t_interval():
    values = [0.31, 0.27, 0.35, 0.30, 0.29]
    mean, lo, hi = mean_ci(values, confidence=0.9)
    lo_ref, hi_ref = sps.t.interval(0.9, df=4, loc=np.mean(values), scale=sps.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (lo, hi) == pytest.approx((lo_ref, hi_ref), rel=1e-12)


def test_mean_ci_edge_cases():
    mean, lo, hi = mean_ci([0.4])
    assert mean == 0.4 and np.isnan(lo) and np.isnan(hi)
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_paired_difference_uses_shared_seeds():
    a = {0: 0.5, 1: 0.6, 2: 0.55, 3: 0.9}
    b = {0: 0.4, 1: 0.45, 2: 0.5, 7: 0.0}
    mean, lo, hi, n = paired_difference_ci(a, b)
    diffs = [0.1, 0.15, 0.05]
    lo_ref, hi_ref = sps.t.interval(0.95, df=2, loc=np.mean(diffs), scale=sps.sem(diffs))
    assert n == 3
    assert mean == pytest.approx(np.mean(diffs))
    assert (lo, hi) == pytest.approx((lo_ref, hi_ref))
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference_ci({0: 1.0}, {1: 1.0})


def test_relative_gain():
    a = {0: 1.2, 1: 0.9, 2: 1.5}
    b = {0: 1.0, 1: -1.0, 2: 1.0}
    gains = [0.2, 1.9, 0.5]
    mean, lo, hi, n = relative_gain_ci(a, b)
    lo_ref, hi_ref = sps.t.interval(0.95, df=2, loc=np.mean(gains), scale=sps.sem(gains))
    assert (mean, lo, hi, n) == pytest.approx((np.mean(gains), lo_ref, hi_ref, 3))
    with pytest.raises(ValueError, match="b is 0"):
        relative_gain_ci({0: 1.0}, {0: 0.0})
