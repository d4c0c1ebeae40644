"""BrainWideBench export of one evaluation's predictions.npz, scored by ibl-bwb-eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from neurossl.eval.bwb_export import Run, write_scores
from neurossl.eval.queries import spiking_queries
from neurossl.eval.scoring import score_queries

W, T, N = 12, 25, 10


def _evaluation(folder, silent: bool):
    """A spiking run's files as the evaluate rule writes them (co_smoothing, forecasting,
    choice), with neurossl's own scores in metrics.json."""
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 0.3, size=(W, T, N))
    counts = rng.poisson(rates).astype(np.float64)
    held_out = np.arange(N) >= 7
    if silent:
        counts[:, :, 8] = 0.0  # a held-out unit that never spikes
    arrays, rows = {}, []
    for task in ("co_smoothing", "forecasting"):
        queries = spiking_queries(task, np.array(["a"] * N), held_out, T, 0)
        noisy = rates * rng.uniform(0.7, 1.3, size=rates.shape)
        values, pred = score_queries(queries, [noisy], counts, "spikes")
        arrays[f"{task}/s1/pred"], arrays[f"{task}/s1/target"] = pred, counts
        rows += [{"session": "s1.spikes", "task": task, "metric": m, "value": v}
                 for m, v in values.items()]  # fmt: skip
    labels = rng.choice([-1.0, 1.0], size=W)
    proba = np.clip(0.5 + 0.3 * labels[:, None] * [-1, 1] + rng.normal(0, 0.2, (W, 2)), 0.01, 1)
    proba /= proba.sum(1, keepdims=True)
    classes = np.array([-1.0, 1.0])
    pred = classes[proba.argmax(1)]
    arrays |= {
        "choice/s1/pred": pred, "choice/s1/target": labels, "choice/s1/proba": proba,
        "choice/s1/classes": classes, "choice/s1/trial_ids": np.arange(W) + 3,
        "windows/s1/start": np.arange(W) * 3.0 + 0.125, "windows/s1/stop": np.arange(W) * 3.0 + 2,
        "windows/s1/trial": np.arange(W) + 3,
    }  # fmt: skip
    bacc = np.mean([np.mean(pred[labels == c] == c) for c in classes])
    rows.append({"session": "s1.spikes", "task": "choice", "metric": "bacc", "value": bacc})
    run_dir = folder / "eval" / "mtm" / "spikes" / "tiny" / "seed0"
    run_dir.mkdir(parents=True)
    np.savez(run_dir / "predictions.npz", **arrays)
    (run_dir / "metrics.json").write_text(json.dumps({"split": "test", "rows": rows}))
    return Run.from_predictions(run_dir / "predictions.npz"), counts


@pytest.mark.parametrize("silent", [False, True])
def test_bwb_scores_equal_neurossl_where_conventions_coincide(tmp_path, silent):
    run, _ = _evaluation(tmp_path, silent)
    table = write_scores([run], tmp_path / "bwb" / "scores.csv", tmp_path / "bwb" / "files")
    assert (tmp_path / "bwb" / "scores.csv").exists()
    assert not (tmp_path / "bwb" / "files.tmp").exists()
    by = {(r["bwb_task"], r["metric"]): r for r in table.to_dict("records")}
    assert set(by) >= {("ts2-co_smoothing", "bps"), ("ts2-forecasting", "poisson_d2"),
                       ("ts1-choice", "bacc"), ("ts1-choice", "ap")}  # fmt: skip
    co = by[("ts2-co_smoothing", "bps")]
    assert co["silent_units"] == int(silent)
    if silent:  # BrainWideBench drops the silent unit, NLB charges the model for it
        assert abs(co["value"] - co["neurossl_value"]) > 1e-4
    else:
        assert co["value"] == pytest.approx(co["neurossl_value"], abs=1e-6)
    for task in ("ts2-co_smoothing", "ts2-forecasting"):
        row = by[(task, "poisson_d2")]
        assert row["value"] == pytest.approx(row["neurossl_value"], abs=1e-5)
    assert by[("ts1-choice", "bacc")]["value"] == pytest.approx(
        by[("ts1-choice", "bacc")]["neurossl_value"]
    )


def test_files_follow_the_predictions_writer_layout(tmp_path):
    run, counts = _evaluation(tmp_path, silent=False)
    files = tmp_path / "bwb" / "files"
    write_scores([run], tmp_path / "bwb" / "scores.csv", files)
    pred = load_file(files / "predictions/mtm-tiny/ts2-co_smoothing/s1/seed_0.safetensors")
    truth = load_file(files / "ground_truth/mtm-tiny/ts2-co_smoothing/s1/ground_truth.safetensors")
    assert pred["predictions"].shape == (W, T, 3)  # the three held-out units, every bin
    np.testing.assert_array_equal(truth["targets"].numpy(), counts[:, :, 7:])
    np.testing.assert_array_equal(pred["window_timestamps"].numpy(), np.arange(W) * 3.0 + 0.125)
    future = load_file(files / "ground_truth/mtm-tiny/ts2-forecasting/s1/ground_truth.safetensors")
    assert future["targets"].shape == (W, 2, N)  # the last 10 % of bins, every unit
    choice = load_file(files / "predictions/mtm-tiny/ts1-choice/s1/seed_0.safetensors")
    assert choice["predictions"].shape == (W, 1, 2)
    np.testing.assert_array_equal(choice["trial_id"].numpy(), np.arange(W) + 3)
    assert (files / "DIFFERENCES.txt").read_text().count("\n") >= 5
    # Log expected counts of exactly the scored entries.
    with np.load(run.predictions) as saved:
        scored = saved["co_smoothing/s1/pred"][:, :, 7:]
    np.testing.assert_allclose(np.exp(pred["predictions"].double().numpy()), scored, rtol=1e-6)
