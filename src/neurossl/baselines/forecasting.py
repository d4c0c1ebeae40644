"""The forecasting task for baselines and the oracle, on both modalities.

- Calcium (ZAPBench protocol): each window's first ``context`` steps are the input and
  the next ``horizon`` steps the target (:func:`neurossl.eval.queries.forecast_windows`);
  scored per horizon step with MAE, MSE and R^2.
- Spikes (MtM protocol): the spiking ``forecasting`` query, i.e. all neurons in the first
  90 % of bins predict the last 10 %, so baselines answer exactly the query MtM/NDT
  answer; scored with bits/spike and Poisson D^2. ``context``/``horizon`` are then
  taken from the query, not from the hparams, and predicted counts are clamped to the
  per-neuron rate floor (:func:`neurossl.baselines.features.rate_floor`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from neurossl.baselines.features import rate_floor
from neurossl.baselines.forecasters import make_forecaster
from neurossl.baselines.session_data import SessionInfo, SplitArrays, ground_truth
from neurossl.eval.metrics import EPS, horizon_metrics
from neurossl.eval.queries import Query, forecast_windows, spiking_queries
from neurossl.eval.scoring import score_queries

Scored = tuple[dict[str, float], dict[str, np.ndarray]]
#: Upper bound (about) of the training pairs :func:`sliding_pairs` makes.
MAX_PAIRS = 4096


def forecast_split(
    info: SessionInfo, activity: np.ndarray, hparams: dict[str, Any], query_seed: int
) -> tuple[np.ndarray, np.ndarray, Query | None]:
    """(context, future, spiking query or None) of windows [W, T, N] (see module doc)."""
    if info.modality == "calcium":
        context, future = forecast_windows(
            activity, int(hparams["context"]), int(hparams["horizon"])
        )
        return context, future, None
    n_bins, n_neurons = activity.shape[1], activity.shape[2]
    (query,) = spiking_queries(
        "forecasting",
        info.regions,
        np.zeros(n_neurons, dtype=bool),
        n_bins,
        query_seed,
        float(hparams["forecast_fraction"]),
    )
    n_context = int(query.visible[:, 0].sum())
    return activity[:, :n_context], activity[:, n_context:], query


def sliding_pairs(
    activity: np.ndarray, context: int, horizon: int, max_pairs: int = MAX_PAIRS
) -> tuple[np.ndarray, np.ndarray]:
    """(context, future) pairs at every offset of each window [W, T, N], window by window.

    Offsets are strided so at most about ``max_pairs`` pairs are made (long windows of
    real recordings would otherwise fill memory); the pairs of a window stay adjacent,
    which the trained forecasters' held-out split relies on.
    """
    if context < 1 or horizon < 1 or context + horizon > activity.shape[1]:
        raise ValueError(
            f"windows of {activity.shape[1]} steps cannot hold context {context} + horizon "
            f"{horizon}; lower the 'context'/'horizon' hparams or use longer windows"
        )
    span = context + horizon
    offsets = activity.shape[1] - span + 1
    stride = max(1, math.ceil(activity.shape[0] * offsets / max_pairs))
    starts = np.arange(0, offsets, stride)
    pairs = np.stack([activity[:, s : s + span] for s in starts], axis=1)  # [W, K, span, N]
    pairs = pairs.reshape(-1, span, activity.shape[2])
    return pairs[:, :context], pairs[:, context:]


def fit_forecasting(
    method: str,
    info: SessionInfo,
    train: SplitArrays,
    hparams: dict[str, Any],
    seeds: tuple[int, int],
    device: str,
) -> dict[str, Any]:
    """Fit the method's forecaster on train windows; ``seeds`` = (training, query) seeds."""
    forecaster = make_forecaster(method, hparams)
    if info.modality == "calcium" and forecaster.slides:
        context, future = sliding_pairs(
            train.activity, int(hparams["context"]), int(hparams["horizon"])
        )
    else:
        context, future, _ = forecast_split(info, train.activity, hparams, seeds[1])
    forecaster.fit(context, future, seeds[0], device)
    floor = rate_floor(train.activity, float(hparams["rate_floor"]), EPS)
    return {"forecaster": forecaster.state(), "floor": torch.from_numpy(floor)}


def score_forecasting(
    method: str,
    info: SessionInfo,
    test: SplitArrays,
    state: dict[str, Any],
    hparams: dict[str, Any],
    query_seed: int,
) -> Scored:
    context, future, query = forecast_split(info, test.activity, hparams, query_seed)
    forecaster = make_forecaster(method, hparams)
    forecaster.load_state(state["forecaster"])
    pred = forecaster.predict(context)
    if info.modality == "spikes":
        pred = np.maximum(pred, state["floor"].numpy())
    return score_forecast(info, pred, future, query, test.activity)


def oracle_forecasting(
    info: SessionInfo, test: SplitArrays, hparams: dict[str, Any], query_seed: int
) -> Scored:
    """The noise-free truth of the future steps (true rates / true signal)."""
    _, future, query = forecast_split(info, test.activity, hparams, query_seed)
    _, pred, _ = forecast_split(info, ground_truth(info, test), hparams, query_seed)
    return score_forecast(info, pred, future, query, test.activity)


def score_forecast(
    info: SessionInfo,
    pred: np.ndarray,
    future: np.ndarray,
    query: Query | None,
    activity: np.ndarray,
) -> Scored:
    arrays = {"pred": pred, "target": future}
    if query is None:
        return horizon_metrics(pred, future), arrays
    full = np.full(activity.shape, np.nan)
    full[:, activity.shape[1] - pred.shape[1] :] = pred
    values, _ = score_queries([query], [full], activity, info.modality)
    return values, arrays
