"""Scoring a method's answers to the queries of a task, the same way for every method.

A task can have several queries (one per region); each entry of the grid is scored at
most once, so the answers are assembled into one prediction and the unscored entries are
NaN. Spiking tasks are scored as NLB does (bits/spike, with a per-neuron null over the
scored entries) and with Poisson D^2 in both conventions (per-neuron mean and pooled);
calcium tasks with R^2 and squared/absolute error.
"""

from __future__ import annotations

import numpy as np

from neurossl.eval.metrics import bits_per_spike, mae, mse, poisson_d2, poisson_d2_pooled, r2
from neurossl.eval.queries import Query


def assemble(
    queries: list[Query], predictions: list[np.ndarray], shape: tuple[int, ...]
) -> np.ndarray:
    """One [W, T, N] prediction holding each query's answer on its target, NaN elsewhere."""
    if not queries:
        raise ValueError("no queries to score")
    if len(queries) != len(predictions):
        raise ValueError(f"{len(queries)} queries but {len(predictions)} predictions")
    out = np.full(shape, np.nan)
    scored = np.zeros(shape[1:], dtype=bool)
    for query, pred in zip(queries, predictions, strict=True):
        if pred.shape != shape:
            raise ValueError(
                f"{query.task} query {query.region}: prediction {pred.shape} != {shape}"
            )
        if (scored & query.target).any():
            raise ValueError(f"{query.task} queries score some entries twice ({query.region})")
        scored |= query.target
        out[:, query.target] = pred[:, query.target]
    return out


def score_queries(
    queries: list[Query], predictions: list[np.ndarray], activity: np.ndarray, modality: str
) -> tuple[dict[str, float], np.ndarray]:
    """Metric values of a task and the assembled prediction (NaN off target).

    ``activity`` and each prediction are [W, T, N]; spiking predictions are expected
    counts per bin.
    """
    activity = np.asarray(activity, dtype=np.float64)
    pred = assemble(queries, predictions, activity.shape)
    observed = np.where(np.isnan(pred), np.nan, activity)
    n = activity.shape[-1]
    if modality == "spikes":
        values = {
            "bps": bits_per_spike(pred, observed),
            "poisson_d2": poisson_d2(pred, observed),
            "poisson_d2_pooled": poisson_d2_pooled(pred, observed),
        }
    elif modality == "calcium":
        values = {
            "r2": r2(pred.reshape(-1, n), observed.reshape(-1, n)),
            "mse": mse(pred, observed),
            "mae": mae(pred, observed),
        }
    else:
        raise ValueError(f"unknown modality {modality!r}; expected 'spikes' or 'calcium'")
    return values, pred
