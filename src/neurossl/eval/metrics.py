"""The metrics of the benchmark, computed one way for every method.

Conventions shared by every function here:

- Arrays are ``[..., N]``: the last axis is neurons (or outputs), every leading axis
  (windows, bins, horizon steps) is pooled. A 1-D array is one neuron.
- Spiking ``rates`` are *expected counts per bin* (not Hz), the Poisson mean of ``counts``.
- NaN in ``counts`` / ``target`` marks an entry that is not scored. This is how a query
  (e.g. "held-out neurons only", "last 10 % of bins") is scored without reshaping: the
  caller sets the unscored entries to NaN, exactly as NLB does with its NaN-padded
  evaluation tensors.
- Rates are clamped to ``EPS`` before the log. ``EPS`` = 1e-9 is the value NLB
  substitutes for zero rates, so bits/spike matches ``nlb_tools`` to round-off.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from neurossl.names import horizon_metric

EPS = 1e-9
_LN2 = float(np.log(2.0))


def bits_per_spike(rates: np.ndarray, counts: np.ndarray) -> float:
    """NLB bits/spike: (NLL_null - NLL_model) / (n_spikes ln 2), pooled over neurons.

    The null predicts each neuron's mean count over the scored entries. A neuron without
    a spike in the scored data has a null rate of 0 (clamped to EPS), so it adds nothing
    to the null NLL and costs the model its predicted rate. NaN when nothing spiked.
    """
    gain, spikes = _log_likelihood_gain(rates, counts)
    total = float(spikes.sum())
    return float(gain.sum() / (total * _LN2)) if total > 0 else float("nan")


def bits_per_spike_per_neuron(rates: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bits/spike of every neuron on its own; NaN for neurons without a scored spike."""
    gain, spikes = _log_likelihood_gain(rates, counts)
    out = np.full(gain.shape, np.nan)
    has = spikes > 0
    out[has] = gain[has] / (spikes[has] * _LN2)
    return out


def poisson_d2_pooled(rates: np.ndarray, counts: np.ndarray) -> float:
    """Fraction of Poisson deviance explained, pooled: 1 - sum D(model) / sum D(null).

    D(y, mu) = 2 sum(y log(y / mu) - (y - mu)) with 0 log 0 = 0, summed over every scored
    entry of every neuron; the null is the per-neuron mean count of the scored entries.
    High-rate neurons weigh more. NaN when the null deviance is 0 (every scored neuron
    is constant).
    """
    mu, y, valid = _prepare_poisson(rates, counts)
    d_model, d_null = _deviances(mu, y, valid)
    total = float(d_null.sum())
    return float(1.0 - d_model.sum() / total) if total > 0 else float("nan")


def poisson_d2(rates: np.ndarray, counts: np.ndarray) -> float:
    """IBL BrainWideBench's ``poisson_d2``: the mean over neurons of each one's D^2.

    Each neuron counts equally, whatever its rate. As ``ibl_bwb_eval``'s
    ``PoissonD2Score`` does, a neuron is left out when it has no scored spike or its
    null deviance is below ``EPS``; NaN when no neuron is left.
    """
    mu, y, valid = _prepare_poisson(rates, counts)
    d_model, d_null = _deviances(mu, y, valid)
    spikes = np.where(valid, y, 0.0).sum(axis=0)
    ok = (spikes > 0) & (d_null / 2.0 >= EPS)
    return float(np.mean(1.0 - d_model[ok] / d_null[ok])) if ok.any() else float("nan")


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over neurons of each neuron's R^2 over its non-NaN targets.

    A neuron whose scored target is constant (spread within rounding, see
    :func:`_varies`) or has < 2 entries has no defined R^2 and is left out of the mean;
    NaN when no neuron is left.
    """
    p, t, valid = _prepare_regression(pred, target)
    mean = _column_means(t, valid)
    ss_tot = np.where(valid, (t - mean) ** 2, 0.0).sum(axis=0)
    ss_res = np.where(valid, (t - p) ** 2, 0.0).sum(axis=0)
    ok = _varies(t, valid)
    return float(np.mean(1.0 - ss_res[ok] / ss_tot[ok])) if ok.any() else float("nan")


def pearson(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over neurons of the Pearson correlation of prediction and non-NaN target.

    Neurons where either side is constant (within rounding, see :func:`_varies`) are
    left out; NaN when none is left, e.g. for a prediction that is one value per neuron.
    """
    p, t, valid = _prepare_regression(pred, target)
    dp = np.where(valid, p - _column_means(p, valid), 0.0)
    dt = np.where(valid, t - _column_means(t, valid), 0.0)
    denom = np.sqrt((dp**2).sum(axis=0) * (dt**2).sum(axis=0))
    ok = _varies(p, valid) & _varies(t, valid)
    return float(np.mean((dp * dt).sum(axis=0)[ok] / denom[ok])) if ok.any() else float("nan")


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error over all non-NaN targets (pooled, not per neuron)."""
    p, t, valid = _prepare_regression(pred, target)
    return float(np.abs(p - t)[valid].mean()) if valid.any() else float("nan")


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all non-NaN targets (pooled, not per neuron)."""
    p, t, valid = _prepare_regression(pred, target)
    return float(((p - t) ** 2)[valid].mean()) if valid.any() else float("nan")


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = _prepare_labels(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (chance = 1 / n_classes).

    Predicted classes absent from ``y_true`` only lower the recall of the true classes,
    as in scikit-learn.
    """
    y_true, y_pred = _prepare_labels(y_true, y_pred)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls))


def horizon_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """ZAPBench-style forecasting scores: per horizon step and overall.

    ``pred``/``target`` are [W, H, N]. ``mae_h{k}``/``mse_h{k}`` pool windows and neurons
    at step k (ZAPBench's MAE per step); ``r2_h{k}`` and ``pearson_h{k}`` (CalM's score)
    are per neuron across windows at step k, averaged over neurons. The overall
    ``mae``/``mse``/``r2`` pool every (window, step) entry, and ``pearson`` correlates each
    neuron's predicted and true futures over all of them.
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(
            f"horizon_metrics needs pred and target of equal shape [W, H, N], "
            f"got {pred.shape} and {target.shape}"
        )
    out: dict[str, float] = {}
    for k in range(pred.shape[1]):
        out[horizon_metric("mae", k + 1)] = mae(pred[:, k], target[:, k])
        out[horizon_metric("mse", k + 1)] = mse(pred[:, k], target[:, k])
        out[horizon_metric("r2", k + 1)] = r2(pred[:, k], target[:, k])
        out[horizon_metric("pearson", k + 1)] = pearson(pred[:, k], target[:, k])
    n = pred.shape[2]
    out["mae"] = mae(pred, target)
    out["mse"] = mse(pred, target)
    out["r2"] = r2(pred.reshape(-1, n), target.reshape(-1, n))
    out["pearson"] = pearson(pred.reshape(-1, n), target.reshape(-1, n))
    return out


# --- shared preparation ---


def _as_matrix(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError(f"{name} must have at least one axis, got a scalar")
    return array.reshape(-1, 1) if array.ndim == 1 else array.reshape(-1, array.shape[-1])


def _check_shapes(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{a_name} {np.shape(a)} and {b_name} {np.shape(b)} must have one shape")


def _prepare_regression(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    _check_shapes("pred", pred, "target", target)
    p, t = _as_matrix("pred", pred), _as_matrix("target", target)
    valid = ~np.isnan(t)
    if not np.isfinite(p[valid]).all():
        raise ValueError("pred has NaN or inf where the target is scored")
    return p, t, valid


def _prepare_poisson(rates: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    _check_shapes("rates", rates, "counts", counts)
    r, y = _as_matrix("rates", rates), _as_matrix("counts", counts)
    valid = ~np.isnan(y)
    scored = r[valid]
    if not np.isfinite(scored).all():
        raise ValueError("rates have NaN or inf where counts are scored")
    if (scored < 0).any():
        raise ValueError("rates must be >= 0 expected counts per bin; got negative values")
    if (y[valid] < 0).any():
        raise ValueError("counts must be >= 0")
    # Unscored entries may hold anything (NaN included); give them a harmless rate.
    return np.where(valid, np.maximum(r, EPS), 1.0), y, valid


#: A column whose standard deviation is at most this fraction of its largest magnitude
#: is constant: the spread is rounding (float32, the precision models predict and save
#: in, resolves ~1.2e-7 of a value; a mean of equal float64 values is off by an ulp),
#: and a correlation or R^2 of rounding noise is meaningless.
SPREAD_RTOL = 8 * float(np.finfo(np.float32).eps)


def _varies(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per column: >= 2 valid entries whose spread exceeds rounding of their magnitude."""
    n = valid.sum(axis=0)
    dev = np.where(valid, x - _column_means(x, valid), 0.0)
    std = np.sqrt((dev**2).sum(axis=0) / np.maximum(n, 1))
    scale = np.where(valid, np.abs(x), 0.0).max(axis=0, initial=0.0)
    return (n >= 2) & (std > SPREAD_RTOL * scale)


def _column_means(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-column mean over valid entries, shape [1, N]; 0 for columns with none."""
    n = valid.sum(axis=0)
    total = np.where(valid, x, 0.0).sum(axis=0)
    return (total / np.maximum(n, 1))[None, :]


def _log_likelihood_gain(rates: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron: Poisson log-likelihood of the model minus the null's, and spike total.

    The log(y!) terms are the same for model and null, so they cancel and are skipped.
    """
    mu, y, valid = _prepare_poisson(rates, counts)
    null = np.maximum(_column_means(y, valid), EPS)
    y0 = np.where(valid, y, 0.0)
    gain = y0 * (np.log(mu) - np.log(null)) - np.where(valid, mu - null, 0.0)
    return gain.sum(axis=0), y0.sum(axis=0)


def _deviances(mu: np.ndarray, y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per neuron: Poisson deviance of the model and of the per-neuron mean-count null."""
    null = np.broadcast_to(np.maximum(_column_means(y, valid), EPS), y.shape)
    return _poisson_deviance(mu, y, valid), _poisson_deviance(null, y, valid)


def _poisson_deviance(mu: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    y0 = np.where(valid, y, 0.0)
    terms = xlogy(y0, y0) - xlogy(y0, mu) - (y0 - mu)
    return 2.0 * np.where(valid, terms, 0.0).sum(axis=0)


def _prepare_labels(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    if y_true.size == 0:
        raise ValueError("no labels to score")
    return y_true, y_pred
