"""Recompute a metrics.csv row from the predictions.npz its evaluation saved.

An independent code path on purpose: nlb_tools for bits/spike, scikit-learn and scipy
for everything else, never ``neurossl.eval.metrics``. The key scheme it reads is the
one ``neurossl.eval.records`` documents.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from nlb_tools.evaluation import bits_per_spike
from scipy.stats import pearsonr
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    mean_poisson_deviance,
    mean_squared_error,
    r2_score,
)

#: Rates NLB substitutes for zeros; deviances need a positive mean too.
RATE_FLOOR = 1e-9
#: Spread below this fraction of a column's magnitude counts as constant (float32 ulps).
CONSTANT_RTOL = 8 * float(np.finfo(np.float32).eps)


def predictions_file(results: Path, row: dict) -> Path:
    """The predictions.npz of a row; seed-independent methods ran at one seed only."""
    modality = row["session"].rsplit(".", 1)[1]
    folder = results / "eval" / row["method"] / modality / str(row["size"])
    path = folder / f"seed{row['seed']}" / "predictions.npz"
    if not path.exists():
        path = sorted(folder.glob("seed*/predictions.npz"))[0]
    return path


def recompute(arrays: dict[str, np.ndarray], row: dict, session_file: Path) -> float:
    """The value of one row, from the saved arrays alone (and the Session's trial table
    to check trial ids)."""
    session = row["session"].rsplit(".", 1)[0]
    metric, task = row["metric"], row["task"]
    prefix = f"{task}/{session}/"
    if metric.startswith("frozen_"):
        prefix, metric = prefix + "frozen_", metric.removeprefix("frozen_")
    pred, target = arrays[prefix + "pred"], arrays[prefix + "target"]
    if prefix + "trial_ids" in arrays:
        _check_trials(arrays, prefix, task, session, session_file)
    if metric in ("bacc", "acc"):
        return _classification(metric, pred, target, arrays, prefix)
    if metric in ("bps", "poisson_d2", "poisson_d2_pooled"):
        return _poisson(metric, pred.astype(np.float64), target.astype(np.float64))
    decoded = prefix + "trial_ids" in arrays  # one decoded variable: all bins pooled
    pred, target = pred.astype(np.float64), target.astype(np.float64)
    if decoded:
        pred, target = pred.reshape(-1, 1), target.reshape(-1, 1)
    return _regression(metric, pred, target)


def _classification(
    metric: str, pred: np.ndarray, target: np.ndarray, arrays: dict, prefix: str
) -> float:
    scored = ~np.isnan(target.astype(np.float64))
    if prefix + "proba" in arrays:
        proba, classes = arrays[prefix + "proba"], arrays[prefix + "classes"]
        assert proba.shape == (pred.shape[0], classes.size)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(classes[proba.argmax(axis=1)], pred)
    score = balanced_accuracy_score if metric == "bacc" else accuracy_score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predicted classes absent from the targets
        return float(score(target[scored], pred[scored]))


def _poisson(metric: str, pred: np.ndarray, target: np.ndarray) -> float:
    """Scored entries: where the prediction is given (NaN elsewhere) and counts are known."""
    target = np.where(np.isnan(pred), np.nan, target)
    if metric == "bps":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nanmean of never-scored neurons
            return float(bits_per_spike(np.nan_to_num(pred), target.copy()))
    n = pred.shape[-1]
    mu, y = pred.reshape(-1, n), target.reshape(-1, n)
    d_model, d_null, spikes = [], [], []
    for j in range(n):
        keep = ~np.isnan(y[:, j])
        if not keep.any():
            continue
        yj, mj = y[keep, j], np.maximum(mu[keep, j], RATE_FLOOR)
        null = np.full_like(yj, max(yj.mean(), RATE_FLOOR))
        d_model.append(mean_poisson_deviance(yj, mj) * yj.size)
        d_null.append(mean_poisson_deviance(yj, null) * yj.size)
        spikes.append(yj.sum())
    d_model, d_null, spikes = map(np.asarray, (d_model, d_null, spikes))
    if metric == "poisson_d2_pooled":
        return float(1 - d_model.sum() / d_null.sum()) if d_null.sum() > 0 else float("nan")
    # ibl_bwb_eval's PoissonD2Score: silent neurons and zero null deviance left out.
    ok = (spikes > 0) & (d_null / 2 >= RATE_FLOOR)
    return float(np.mean(1 - d_model[ok] / d_null[ok])) if ok.any() else float("nan")


def _regression(metric: str, pred: np.ndarray, target: np.ndarray) -> float:
    base, _, step = metric.partition("_h")
    if step:  # per horizon step: [W, H, N] -> [W, N] at step k
        pred, target = pred[:, int(step) - 1], target[:, int(step) - 1]
    scored = ~np.isnan(target)
    if base == "mse":
        return float(mean_squared_error(target[scored], pred[scored]))
    if base == "mae":
        return float(mean_absolute_error(target[scored], pred[scored]))
    n = pred.shape[-1]
    pred, target = pred.reshape(-1, n), target.reshape(-1, n)
    values = []
    for j in range(n):
        keep = ~np.isnan(target[:, j])
        p, t = pred[keep, j], target[keep, j]
        if keep.sum() < 2 or _constant(t) or (base == "pearson" and _constant(p)):
            continue
        values.append(r2_score(t, p) if base == "r2" else pearsonr(p, t)[0])
    return float(np.mean(values)) if values else float("nan")


def _constant(x: np.ndarray) -> bool:
    return bool(np.std(x) <= CONSTANT_RTOL * np.max(np.abs(x)))


def _check_trials(arrays: dict, prefix: str, task: str, session: str, path: Path) -> None:
    """Trial ids point at the windows' trials, and label targets are those trials' labels."""
    trials = arrays[prefix + "trial_ids"]
    assert set(trials.tolist()) <= set(arrays[f"windows/{session}/trial"].tolist())
    if arrays[prefix + "target"].ndim != 1:
        return
    with h5py.File(path, "r") as f:
        table = f["trials"]
        names = [task] if task == "choice" else [task, task.removeprefix("stimulus_")]
        column = next(name for name in names if name in table)
        labels = np.asarray(table[column][()], dtype=np.float64)
    target = arrays[prefix + "target"].astype(np.float64)
    expected = np.where(trials >= 0, labels[np.clip(trials, 0, None)], np.nan)
    np.testing.assert_array_equal(target, expected)


def mismatched_rows(results: Path, table: pd.DataFrame) -> list[str]:
    """Every row of a run's metrics.csv whose value its saved predictions do not give."""
    cache: dict[Path, dict[str, np.ndarray]] = {}
    failures = []
    for row in table.to_dict("records"):
        path = predictions_file(results, row)
        if path not in cache:
            with np.load(path) as saved:
                cache[path] = {key: saved[key] for key in saved.files}
        session = results / "sessions" / f"{row['session']}.h5"
        try:
            value = recompute(cache[path], row, session)
        except Exception as error:  # collect every row, then fail once
            failures.append(f"{row}: {type(error).__name__} {error}")
            continue
        same = (
            np.isnan(value)
            if np.isnan(row["value"])
            else value == pytest.approx(row["value"], rel=1e-6, abs=1e-6)
        )
        if not same:
            failures.append(f"{row}: recomputed {value!r}")
    return failures
