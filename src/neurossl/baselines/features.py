"""Input features of the linear baselines, computed the same way at fit and at score time."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d


def smoothed(activity: np.ndarray, modality: str, sigma_bins: float) -> np.ndarray:
    """Spike counts smoothed in time within each window (NLB's smoothing baseline).

    Single-bin counts are mostly zeros, so a regression from them is mostly noise; a
    Gaussian kernel of ``sigma_bins`` turns them into rate estimates. Calcium traces are
    already smooth (indicator kinetics) and are returned as they are.
    """
    if modality != "spikes" or sigma_bins <= 0:
        return activity
    return gaussian_filter1d(activity, sigma=sigma_bins, axis=1, mode="nearest")


def chunk_means(activity: np.ndarray, chunks: int) -> np.ndarray:
    """[W, T, N] -> [W, chunks * N]: mean activity in ``chunks`` consecutive parts of a window."""
    if not 1 <= chunks <= activity.shape[1]:
        raise ValueError(
            f"hparam 'decode_chunks' must be in [1, {activity.shape[1]} bins], got {chunks}"
        )
    parts = np.array_split(activity, chunks, axis=1)
    return np.concatenate([p.mean(axis=1) for p in parts], axis=1)


def rate_floor(train_activity: np.ndarray, fraction: float, eps: float) -> np.ndarray:
    """Per-neuron lower bound of predicted spike rates: ``fraction`` of the training mean.

    Ridge and forecasters can predict zero or negative counts; clamping those to a tiny
    epsilon would charge ~20 nats for every spike that then occurs and make bits/spike
    measure the clamp, not the model. A floor at a fraction of the neuron's mean rate is
    what a calibrated Poisson model would never go below anyway.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"hparam 'rate_floor' must be in [0, 1), got {fraction}")
    n = train_activity.shape[-1]
    return np.maximum(fraction * train_activity.reshape(-1, n).mean(axis=0), eps)
