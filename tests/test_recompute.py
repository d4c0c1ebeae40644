"""Every row of the default run's metrics.csv, recomputed from the predictions it saved.

The run is the embedded default workflow (the session fixture ``default_run`` of
conftest.py, shared with test_default_workflow.py): the objective matrix on both
modalities and every task kind, so every evaluation code path (NDT, Perceiver, CalM, the
fitted baselines and the oracle) writes rows; a tiny all-methods run of its own would cost the
suite a second workflow run for no path the default run lacks. The recomputation
(tests/recompute.py) uses nlb_tools, scikit-learn and scipy only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from recompute import mismatched_rows

pytestmark = pytest.mark.slow

#: One method per evaluation code path: NDT family pretrained and scratch (heads, frozen
#: probes, spiking queries), Perceiver, CalM, the fitted decoders and forecasters (the
#: constant ``mean`` among them) and the oracle.
METHODS = ["mtm", "scratch_ndt", "poyo_ssl", "calm", "linear", "mean", "linear_ar", "oracle"]


def test_every_metrics_csv_row_is_recomputed_from_saved_predictions(default_run):
    table = pd.read_csv(default_run / "report" / "metrics.csv")
    assert set(METHODS) <= set(table["method"])
    assert {"bps", "poisson_d2", "poisson_d2_pooled", "bacc", "frozen_bacc", "frozen_r2",
            "r2", "mae_h1", "pearson"} <= set(table["metric"])  # fmt: skip
    failures = mismatched_rows(default_run, table)
    assert not failures, f"{len(failures)} of {len(table)} rows:\n" + "\n".join(failures[:20])


def test_bwb_export_scored_by_ibl_bwb_eval_agrees_where_conventions_coincide(default_run):
    """BrainWideBench's scorers on the exported files: bits/spike equal to neurossl's when no
    scored unit is silent, poisson_d2 (the same per-neuron convention) equal to float32
    round-off, and the scores reported beside neurossl's in the report."""
    from ibl_bwb_eval.scoring import ts2

    scores = pd.read_csv(default_run / "bwb" / "scores.csv")
    assert {"ts2-co_smoothing", "ts2-forecasting", "ts1-choice", "ts1-wheel_speed"} <= set(
        scores["bwb_task"]
    )
    assert {"mtm", "scratch_ndt", "linear", "oracle"} <= set(scores["method"])
    bps = scores[scores["metric"] == "bps"]
    quiet = bps[bps["silent_units"] == 0]
    assert len(quiet) > 0
    np.testing.assert_allclose(quiet["value"], quiet["neurossl_value"], rtol=0, atol=1e-6)
    d2 = scores[scores["metric"] == "poisson_d2"]
    np.testing.assert_allclose(d2["value"], d2["neurossl_value"], rtol=0, atol=1e-5)
    bacc = scores[(scores["bwb_task"] == "ts1-choice") & (scores["metric"] == "bacc")]
    np.testing.assert_allclose(bacc["value"], bacc["neurossl_value"], atol=1e-6)
    # BrainWideBench's own directory scorer finds the same files and numbers.
    files = default_run / "bwb" / "files"
    rescored = ts2.score_dir(
        files / "predictions" / "mtm-tiny", files / "ground_truth" / "mtm-tiny"
    )
    mtm = scores[(scores["method"] == "mtm") & scores["bwb_task"].str.startswith("ts2-")]
    for (_, task, session, _), values in rescored.items():
        row = mtm[(mtm["bwb_task"] == task) & (mtm["session"] == session)]
        for metric, value in values.items():
            assert row[row["metric"] == metric]["value"].item() == pytest.approx(value)
    html = (default_run / "report" / "index.html").read_text()
    assert "BrainWideBench-convention scores" in html and "not leaderboard" in html
