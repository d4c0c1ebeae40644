"""The ``linear`` baseline on neuron-subset queries: co-smoothing, inter- and intra-region.

One ridge map per query from the visible neurons' (smoothed) activity at a bin to the
target neurons' activity at the same bin, shared across bins and fitted on all train
windows. Spiking predictions are clamped to a per-neuron rate floor so they are valid
Poisson means.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurossl.baselines.features import rate_floor, smoothed
from neurossl.eval.linear_maps import LinearMap, fit_ridge_cv, group_folds
from neurossl.eval.metrics import EPS
from neurossl.eval.queries import Query


def neuron_masks(query: Query) -> tuple[np.ndarray, np.ndarray]:
    """(visible, target) neuron masks of a query that is the same at every bin."""
    see, score = query.visible[0], query.target[0]
    if not ((query.visible == see).all() and (query.target == score).all()):
        raise ValueError(f"{query.task} query is not a neuron subset; the ridge needs one")
    return see, score


def fit_spatial(
    queries: list[Query], activity: np.ndarray, modality: str, hparams: dict[str, Any]
) -> dict[str, Any]:
    """Fit one ridge per query on train windows [W, T, N]; returns a tensor state."""
    w, t, _ = activity.shape
    features = smoothed(activity, modality, float(hparams["smooth_bins"]))
    folds = group_folds(np.repeat(np.arange(w), t))
    maps = []
    for query in queries:
        see, score = neuron_masks(query)
        x = features[:, :, see].reshape(w * t, -1)
        y = activity[:, :, score].reshape(w * t, -1)
        maps.append(fit_ridge_cv(x, y, folds).state())
    floor = rate_floor(activity, float(hparams["rate_floor"]), EPS)
    return {"maps": maps, "floor": torch.from_numpy(floor)}


def predict_spatial(
    queries: list[Query],
    state: dict[str, Any],
    activity: np.ndarray,
    modality: str,
    hparams: dict[str, Any],
) -> list[np.ndarray]:
    """Each query's prediction [W, T, N] (NaN off its target) from test windows."""
    if len(state["maps"]) != len(queries):
        raise ValueError(
            f"the finetuned model has {len(state['maps'])} maps for {len(queries)} queries; "
            "were the splits or neuron table changed after finetuning?"
        )
    w, t, _ = activity.shape
    features = smoothed(activity, modality, float(hparams["smooth_bins"]))
    floor = state["floor"].numpy()
    out = []
    for query, map_state in zip(queries, state["maps"], strict=True):
        see, score = neuron_masks(query)
        pred = np.full(activity.shape, np.nan)
        values = LinearMap.from_state(map_state).predict(features[:, :, see].reshape(w * t, -1))
        values = values.reshape(w, t, -1)
        if modality == "spikes":
            values = np.maximum(values, floor[score])
        pred[:, :, score] = values
        out.append(pred)
    return out
