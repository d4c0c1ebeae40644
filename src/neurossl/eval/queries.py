"""Which entries of a window a model may see and which it is scored on, per task.

Every method answers the same queries, so a number in the report means the same thing
for MtM, a ridge baseline and the oracle. A query is two boolean masks over one window's
``[T, N]`` grid. The masks depend only on the neuron table, the splits and a seed, never
on the method: pass ``splits.seed`` (the dataset seed, not the training seed) so every
method and every training seed is scored on the same random halves.

Definitions (MtM's evaluation, NLB's co-smoothing):

- ``co_smoothing``: see held-in neurons at every bin, predict held-out neurons.
- ``forecasting``: see every neuron in the first bins, predict the last
  ``forecast_fraction`` of bins (at least one bin).
- ``inter_region``: per region r, see the neurons outside r, predict those of r. Needs
  >= 2 regions.
- ``intra_region``: per region r with >= 2 neurons, a seeded random half of r is the
  target and only the other neurons of r are visible.

Neurons whose region is ``"unknown"`` are never a target region of inter/intra queries
(predicting "the unlabelled neurons" is not an anatomical question) but stay visible
as "outside r" for inter-region queries.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

SPIKING_QUERY_TASKS = ("co_smoothing", "forecasting", "inter_region", "intra_region")
UNKNOWN_REGION = "unknown"


@dataclass(frozen=True)
class Query:
    task: str
    #: Target region of inter/intra-region queries; None otherwise.
    region: str | None
    #: bool [T, N]: entries a model may see.
    visible: np.ndarray
    #: bool [T, N]: entries that are scored.
    target: np.ndarray


def spiking_queries(
    task: str,
    regions: np.ndarray,
    held_out: np.ndarray,
    n_bins: int,
    seed: int,
    forecast_fraction: float = 0.1,
) -> list[Query]:
    """The queries of one task for a session with these neurons and windows of n_bins.

    ``regions`` (str [N]) and ``held_out`` (bool [N], from the splits' held-out ids) are
    per neuron. An empty list means the session cannot pose the task (e.g. one region
    for inter_region); callers skip it rather than score nothing.
    """
    regions = np.asarray(regions).astype(str)
    held_out = np.asarray(held_out, dtype=bool)
    if regions.ndim != 1 or held_out.shape != regions.shape:
        raise ValueError(
            f"regions {regions.shape} and held_out {held_out.shape} must be 1-D, one per neuron"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if task == "co_smoothing":
        return [_co_smoothing(held_out, n_bins)]
    if task == "forecasting":
        return [_forecasting(regions.size, n_bins, forecast_fraction)]
    if task == "inter_region":
        return _inter_region(regions, n_bins)
    if task == "intra_region":
        return _intra_region(regions, n_bins, seed)
    raise ValueError(f"task {task!r} has no spiking queries; expected one of {SPIKING_QUERY_TASKS}")


def forecast_windows(
    activity: np.ndarray, context: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split windows [W, T, N] into context [W, context, N] and the next horizon steps."""
    activity = np.asarray(activity)
    if activity.ndim != 3:
        raise ValueError(f"forecast_windows needs activity [W, T, N], got shape {activity.shape}")
    if context < 1 or horizon < 1:
        raise ValueError(f"context and horizon must be >= 1, got {context} and {horizon}")
    if context + horizon > activity.shape[1]:
        raise ValueError(
            f"windows of {activity.shape[1]} steps are shorter than context {context} + "
            f"horizon {horizon}; lower the 'context'/'horizon' hparams or use longer windows"
        )
    return activity[:, :context], activity[:, context : context + horizon]


def _neuron_query(
    task: str, region: str | None, see: np.ndarray, score: np.ndarray, n_bins: int
) -> Query:
    visible = np.broadcast_to(see, (n_bins, see.size)).copy()
    target = np.broadcast_to(score, (n_bins, score.size)).copy()
    return Query(task, region, visible, target)


def _co_smoothing(held_out: np.ndarray, n_bins: int) -> Query:
    if not held_out.any() or held_out.all():
        raise ValueError(
            f"co_smoothing needs both held-in and held-out neurons; got {int(held_out.sum())} "
            f"held-out of {held_out.size}"
        )
    return _neuron_query("co_smoothing", None, ~held_out, held_out, n_bins)


def _forecasting(n_neurons: int, n_bins: int, fraction: float) -> Query:
    if not 0 < fraction < 1:
        raise ValueError(f"forecast_fraction must be in (0, 1), got {fraction}")
    n_future = max(1, round(fraction * n_bins))
    if n_future >= n_bins:
        raise ValueError(f"windows of {n_bins} bins leave no context before the forecast")
    future = np.zeros((n_bins, n_neurons), dtype=bool)
    future[n_bins - n_future :] = True
    return Query("forecasting", None, ~future, future)


def _target_regions(regions: np.ndarray) -> list[str]:
    return [r for r in np.unique(regions) if r != UNKNOWN_REGION]


def _inter_region(regions: np.ndarray, n_bins: int) -> list[Query]:
    if np.unique(regions).size < 2:
        return []
    out = []
    for region in _target_regions(regions):
        inside = regions == region
        out.append(_neuron_query("inter_region", region, ~inside, inside, n_bins))
    return out


def _intra_region(regions: np.ndarray, n_bins: int, seed: int) -> list[Query]:
    out = []
    for region in _target_regions(regions):
        members = np.flatnonzero(regions == region)
        if members.size < 2:
            continue
        # Seeded per region by name, so adding a region elsewhere keeps this split.
        rng = np.random.default_rng([seed, zlib.crc32(region.encode())])
        chosen = rng.choice(members, size=members.size // 2, replace=False)
        score = np.zeros(regions.size, dtype=bool)
        score[chosen] = True
        see = (regions == region) & ~score
        out.append(_neuron_query("intra_region", region, see, score, n_bins))
    return out
