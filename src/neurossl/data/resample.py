"""Linear resampling of sampled signals onto another time base (NaN where unsampled).

Behaviour, latents and irregular calcium frames all come on their own clocks; a value
outside the sampled span is unknown, not the nearest sample, hence NaN there.
"""

from __future__ import annotations

import numpy as np


def interpolate(t_source: np.ndarray, values: np.ndarray, t_target: np.ndarray) -> np.ndarray:
    """Rows of ``values`` [T_source, K] (or [T_source]) linearly interpolated at ``t_target``.

    ``t_source`` must be strictly increasing; returns float64 [T_target, K] (or [T_target]).
    """
    t_source = np.asarray(t_source, dtype=np.float64)
    t_target = np.asarray(t_target, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if t_source.size != values.shape[0]:
        raise ValueError(f"{t_source.size} timestamps for {values.shape[0]} samples")
    if t_source.size == 1:
        inside = t_target == t_source[0]
        out = np.where(_column(inside, values.ndim), values[:1], np.nan)
        return out
    lower = np.clip(np.searchsorted(t_source, t_target, side="right") - 1, 0, t_source.size - 2)
    span = t_source[lower + 1] - t_source[lower]
    weight = _column((t_target - t_source[lower]) / span, values.ndim)
    out = values[lower] * (1 - weight) + values[lower + 1] * weight
    outside = (t_target < t_source[0]) | (t_target > t_source[-1])
    out[outside] = np.nan
    return out


def _column(x: np.ndarray, ndim: int) -> np.ndarray:
    return x[:, None] if ndim == 2 else x
