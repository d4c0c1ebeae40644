"""Metric parity with reference implementations (NLB, scikit-learn) and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from nlb_tools.evaluation import bits_per_spike as nlb_bits_per_spike
from sklearn.metrics import balanced_accuracy_score, r2_score

from neurossl.eval import metrics
from neurossl.names import horizon_metric


@pytest.fixture
def poisson_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 0.2, size=(12, 30, 7))
    counts = rng.poisson(rates).astype(np.float64)
    return rates, counts


def test_bits_per_spike_matches_nlb(poisson_data):
    rates, counts = poisson_data
    noisy = rates * np.random.default_rng(1).uniform(0.5, 1.5, size=rates.shape)
    for pred in (rates, noisy):
        expected = nlb_bits_per_spike(pred.copy(), counts.copy())
        assert metrics.bits_per_spike(pred, counts) == pytest.approx(expected, abs=1e-6)
    assert metrics.bits_per_spike(rates, counts) > 0


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_bits_per_spike_nan_counts_match_nlb(poisson_data):
    rates, counts = poisson_data
    counts = counts.copy()
    counts[:, :, 2] = np.nan  # an unscored neuron
    counts[3, 5:9, 4] = np.nan  # scattered unscored entries
    expected = nlb_bits_per_spike(rates.copy(), counts.copy())
    assert metrics.bits_per_spike(rates, counts) == pytest.approx(expected, abs=1e-6)


def test_silent_neuron_and_zero_rates_match_nlb(poisson_data):
    rates, counts = poisson_data
    counts, rates = counts.copy(), rates.copy()
    counts[:, :, 0] = 0.0  # no spike: null rate 0
    rates[:, :, 1] = 0.0  # model predicts zero for a neuron that spikes
    expected = nlb_bits_per_spike(rates.copy(), counts.copy())
    got = metrics.bits_per_spike(rates, counts)
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)
    per_neuron = metrics.bits_per_spike_per_neuron(rates, counts)
    assert np.isnan(per_neuron[0]) and np.isfinite(per_neuron[2:]).all()


def test_bits_per_spike_per_neuron_pools_to_total(poisson_data):
    rates, counts = poisson_data
    per = metrics.bits_per_spike_per_neuron(rates, counts)
    for n in range(counts.shape[-1]):
        expected = nlb_bits_per_spike(rates[..., n : n + 1].copy(), counts[..., n : n + 1].copy())
        assert per[n] == pytest.approx(expected, abs=1e-6)
    spikes = counts.reshape(-1, counts.shape[-1]).sum(0)
    assert np.sum(per * spikes) / spikes.sum() == pytest.approx(
        metrics.bits_per_spike(rates, counts)
    )


def test_bits_per_spike_rejects_bad_input(poisson_data):
    rates, counts = poisson_data
    with pytest.raises(ValueError, match="negative"):
        metrics.bits_per_spike(-rates, counts)
    with pytest.raises(ValueError, match="one shape"):
        metrics.bits_per_spike(rates[:, :5], counts)
    assert np.isnan(metrics.bits_per_spike(rates, np.zeros_like(counts)))


def _deviance(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-column Poisson deviance, written out (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(y > 0, y * np.log(y / m), 0.0)
    return 2 * np.sum(ylogy - (y - m), axis=0)


def test_pooled_poisson_d2_matches_direct_deviance(poisson_data):
    rates, counts = poisson_data
    y, mu = counts.reshape(-1, 7), rates.reshape(-1, 7)
    null = np.broadcast_to(y.mean(axis=0, keepdims=True), y.shape)
    expected = 1 - _deviance(y, mu).sum() / _deviance(y, null).sum()
    assert metrics.poisson_d2_pooled(rates, counts) == pytest.approx(expected, rel=1e-10)
    assert metrics.poisson_d2_pooled(null, y) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(metrics.poisson_d2_pooled(rates, np.ones_like(counts)))


def test_poisson_d2_is_ibl_bwb_evals_per_neuron_mean(poisson_data):
    """The same number as ibl_bwb_eval's PoissonD2Score, silent neurons left out."""
    torch = pytest.importorskip("torch")
    from ibl_bwb_eval.metrics.poisson_d2 import PoissonD2Score

    rates, counts = poisson_data
    counts = counts.copy()
    counts[:, :, 3] = 0.0  # a silent neuron: left out by both
    y, mu = counts.reshape(-1, 7), rates.reshape(-1, 7)
    scorer = PoissonD2Score()
    scorer.update(torch.from_numpy(np.log(mu)).double(), torch.from_numpy(y).double())
    expected = float(scorer.compute())
    assert metrics.poisson_d2(rates, counts) == pytest.approx(expected, abs=1e-6)
    null = np.broadcast_to(y.mean(axis=0, keepdims=True), y.shape)
    keep = [j for j in range(7) if j != 3]
    direct = np.mean(1 - _deviance(y, mu)[keep] / _deviance(y, null)[keep])
    assert metrics.poisson_d2(rates, counts) == pytest.approx(direct, rel=1e-10)
    # The conventions differ: pooling weighs high-rate neurons more.
    assert metrics.poisson_d2(rates, counts) != pytest.approx(
        metrics.poisson_d2_pooled(rates, counts), abs=1e-4
    )
    assert np.isnan(metrics.poisson_d2(rates, np.zeros_like(counts)))


def test_r2_matches_sklearn_and_ignores_nan():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(200, 5))
    pred = target + rng.normal(scale=0.7, size=target.shape)
    assert metrics.r2(pred, target) == pytest.approx(r2_score(target, pred), rel=1e-10)
    masked = target.copy()
    masked[:50, 1] = np.nan
    expected = np.mean(
        [r2_score(target[:, j], pred[:, j]) for j in (0, 2, 3, 4)]
        + [r2_score(target[50:, 1], pred[50:, 1])]
    )
    assert metrics.r2(pred, masked) == pytest.approx(expected, rel=1e-10)
    constant = target.copy()
    constant[:, 0] = 3.0  # undefined R^2: left out of the mean
    assert metrics.r2(pred, constant) == pytest.approx(r2_score(target[:, 1:], pred[:, 1:]))


def test_pearson_mae_mse():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(100, 3))
    pred = 2 * target + 1
    assert metrics.pearson(pred, target) == pytest.approx(1.0)
    assert metrics.pearson(-pred, target) == pytest.approx(-1.0)
    assert metrics.mae(pred, target) == pytest.approx(np.abs(pred - target).mean())
    assert metrics.mse(pred, target) == pytest.approx(((pred - target) ** 2).mean())
    target[0, 0] = np.nan
    assert metrics.mse(pred, target) == pytest.approx(np.nanmean((pred - target) ** 2))


def test_constant_prediction_or_target_gives_nan_not_rounding_noise():
    """A per-neuron constant (the ``mean`` baseline) has no correlation, whatever its size."""
    rng = np.random.default_rng(4)
    target = rng.normal(size=(300, 4))
    for level in (0.1, 3.7, 1e6):
        # Equal values whose float64 mean is off by an ulp: an exact-zero test passes them.
        constant = np.full((300, 4), level) + np.float32(0) * target
        assert np.isnan(metrics.pearson(constant, target))
        assert np.isnan(metrics.r2(target, constant))
        assert np.isnan(metrics.pearson(target, constant))
        # float32 rounding of a constant is still a constant.
        wobble = constant * (1 + np.finfo(np.float32).eps * rng.integers(-2, 3, size=(300, 4)))
        assert np.isnan(metrics.pearson(wobble, target))
        assert np.isnan(metrics.r2(target, wobble))
    # A real spread, however small in absolute terms, is kept.
    tiny = 1e-12 * target
    assert metrics.pearson(tiny, target) == pytest.approx(1.0)
    assert metrics.r2(tiny, tiny) == pytest.approx(1.0)
    # One constant neuron is left out of the mean, the others kept.
    mixed = target.copy()
    mixed[:, 0] = 2.5
    assert metrics.pearson(mixed, target) == pytest.approx(1.0)
    assert metrics.r2(target, mixed) == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(4)
    y_true = rng.choice([0, 1, 2], size=90, p=[0.6, 0.3, 0.1])
    y_pred = np.where(rng.random(90) < 0.7, y_true, rng.integers(0, 4, 90))
    assert metrics.balanced_accuracy(y_true, y_pred) == pytest.approx(
        balanced_accuracy_score(y_true, y_pred)
    )
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(np.mean(y_true == y_pred))
    with pytest.raises(ValueError, match="no labels"):
        metrics.balanced_accuracy([], [])


def test_horizon_metrics_keys_and_values():
    rng = np.random.default_rng(5)
    target = rng.normal(size=(40, 3, 6))
    pred = target + rng.normal(scale=[[0.1], [0.5], [1.0]], size=target.shape)
    out = metrics.horizon_metrics(pred, target)
    per_step = ("mae", "mse", "r2", "pearson")
    expected_keys = {horizon_metric(m, k) for m in per_step for k in (1, 2, 3)}
    assert set(out) == expected_keys | {"mae", "mse", "r2", "pearson"}
    assert out["mse_h1"] < out["mse_h2"] < out["mse_h3"]
    assert out["r2_h2"] == pytest.approx(r2_score(target[:, 1], pred[:, 1]))
    step2 = [np.corrcoef(pred[:, 1, i], target[:, 1, i])[0, 1] for i in range(6)]
    assert out["pearson_h2"] == pytest.approx(np.mean(step2))
    assert out["pearson_h1"] > out["pearson_h3"]
    assert out["mae"] == pytest.approx(np.abs(pred - target).mean())
    flat_pred, flat_target = pred.reshape(-1, 6), target.reshape(-1, 6)
    per_neuron = [np.corrcoef(flat_pred[:, i], flat_target[:, i])[0, 1] for i in range(6)]
    assert out["pearson"] == pytest.approx(np.mean(per_neuron))
    with pytest.raises(ValueError, match=r"\[W, H, N\]"):
        metrics.horizon_metrics(pred[0], target[0])
