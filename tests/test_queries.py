"""Query masks: what a model may see and what is scored, per task."""

from __future__ import annotations

import numpy as np
import pytest

from neurossl.eval.queries import forecast_windows, spiking_queries

REGIONS = np.array(["VISp", "VISp", "CA1", "CA1", "CA1", "LP", "unknown", "VISp", "CA1", "PO"])
HELD_OUT = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0, 0], dtype=bool)
N_BINS = 20


def test_co_smoothing_sees_held_in_scores_held_out():
    (query,) = spiking_queries("co_smoothing", REGIONS, HELD_OUT, N_BINS, seed=0)
    assert query.visible.shape == query.target.shape == (N_BINS, REGIONS.size)
    assert not (query.visible & query.target).any()
    assert (query.target == HELD_OUT).all() and (query.visible == ~HELD_OUT).all()
    with pytest.raises(ValueError, match="held-out"):
        spiking_queries("co_smoothing", REGIONS, np.zeros(10, dtype=bool), N_BINS, seed=0)


def test_forecasting_boundary():
    (query,) = spiking_queries("forecasting", REGIONS, HELD_OUT, N_BINS, seed=0)
    assert query.visible[:18].all() and not query.visible[18:].any()
    assert query.target[18:].all() and not query.target[:18].any()
    (short,) = spiking_queries("forecasting", REGIONS, HELD_OUT, 4, seed=0)
    assert short.target.sum(axis=0).tolist() == [1] * REGIONS.size  # at least one bin
    (third,) = spiking_queries("forecasting", REGIONS, HELD_OUT, 30, 0, forecast_fraction=0.3)
    assert int(third.target[:, 0].sum()) == 9


def test_inter_region_one_query_per_named_region():
    queries = spiking_queries("inter_region", REGIONS, HELD_OUT, N_BINS, seed=0)
    assert sorted(q.region for q in queries) == ["CA1", "LP", "PO", "VISp"]
    for q in queries:
        inside = q.region == REGIONS
        assert not (q.visible & q.target).any()
        assert (q.target[0] == inside).all() and (q.visible[0] == ~inside).all()
    assert spiking_queries("inter_region", np.array(["CA1"] * 4), HELD_OUT[:4], N_BINS, 0) == []


def test_intra_region_halves_are_seeded_and_within_region():
    queries = spiking_queries("intra_region", REGIONS, HELD_OUT, N_BINS, seed=3)
    assert sorted(q.region for q in queries) == ["CA1", "VISp"]  # LP, PO: one neuron
    for q in queries:
        members = q.region == REGIONS
        assert not (q.visible & q.target).any()
        assert (q.visible[0] | q.target[0])[~members].sum() == 0
        assert q.target[0].sum() == members.sum() // 2
        assert (q.visible[0] | q.target[0]).sum() == members.sum()
    again = spiking_queries("intra_region", REGIONS, HELD_OUT, N_BINS, seed=3)
    assert all((a.target == b.target).all() for a, b in zip(queries, again, strict=True))
    halves = {
        tuple(np.flatnonzero(spiking_queries("intra_region", REGIONS, HELD_OUT, 5, s)[0].target[0]))
        for s in range(10)
    }
    assert len(halves) > 1  # the seed matters


def test_unknown_task_and_bad_shapes():
    with pytest.raises(ValueError, match="no spiking queries"):
        spiking_queries("choice", REGIONS, HELD_OUT, N_BINS, 0)
    with pytest.raises(ValueError, match="one per neuron"):
        spiking_queries("co_smoothing", REGIONS, HELD_OUT[:3], N_BINS, 0)


def test_forecast_windows():
    activity = np.arange(2 * 10 * 3).reshape(2, 10, 3)
    context, future = forecast_windows(activity, context=6, horizon=3)
    assert context.shape == (2, 6, 3) and future.shape == (2, 3, 3)
    assert (future[:, 0] == activity[:, 6]).all()
    with pytest.raises(ValueError, match="shorter than context"):
        forecast_windows(activity, context=8, horizon=3)
