"""Per-unit mean and standard deviation over a split's windows: the one normalisation.

Every family that z-scores activity per neuron (CalM's scaler, POYO's ``unit_norm``)
takes its statistics from here, so a flat trace is handled one way everywhere: a unit
whose standard deviation is below :data:`FLAT_STD` gets 1, i.e. it maps to about zero
instead of being blown up by a near-zero divisor. Only the windows given are read
(callers pass the train split), so nothing about validation or test leaks in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neurossl.data.loader import WindowDataset

#: Below this standard deviation a unit's trace counts as flat (dF/F or counts per bin).
FLAT_STD = 1e-3


def unit_moments(
    dataset: WindowDataset, units: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of each of ``units`` (unit keys; default every unit of the dataset's
    vocabulary), in that order; a unit with no window in ``dataset`` is an error."""
    n = len(dataset.vocab.unit_ids)
    total, square, count = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(len(dataset)):
        item = dataset[i]
        activity = np.asarray(item["activity"], dtype=np.float64)  # [T, units]
        np.add.at(total, item["unit"], activity.sum(axis=0))
        np.add.at(square, item["unit"], np.square(activity).sum(axis=0))
        np.add.at(count, item["unit"], activity.shape[0])
    keys = list(dataset.vocab.unit_ids if units is None else units)
    rows = np.array([dataset.vocab.unit_index[k] for k in keys], dtype=int)
    missing = [k for k, r in zip(keys, rows, strict=True) if count[r] == 0]
    if missing:
        raise ValueError(f"units without training windows, cannot normalise: {missing[:5]}")
    mean = total[rows] / count[rows]
    std = np.sqrt(np.maximum(square[rows] / count[rows] - mean**2, 0.0))
    return mean, np.where(std < FLAT_STD, 1.0, std)
