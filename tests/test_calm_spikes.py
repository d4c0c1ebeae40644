"""CalM's spike pieces (not yet wired): the causal smoothed trace and the rate read-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurossl.eval.metrics import bits_per_spike
from neurossl.models.rate_readout import RateReadout
from neurossl.objectives.calm_spikes import next_patch_poisson_loss, spike_trace


def test_trace_is_causal_and_keeps_the_shape():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, size=(2, 40, 5)).astype(np.float32)
    trace = spike_trace(counts, bin_size=0.02)
    assert trace.shape == counts.shape and trace.dtype == np.float32
    changed = counts.copy()
    changed[:, 25:] += 3  # the future changes ...
    assert np.array_equal(spike_trace(changed, 0.02)[:, :25], trace[:, :25])  # ... not the past


def test_trace_squared_is_a_rate_estimate():
    rate = 0.4
    counts = np.random.default_rng(1).poisson(rate, size=(20_000, 3))
    trace = spike_trace(counts, bin_size=0.01, tau_s=0.05)
    assert (trace[1000:] ** 2).mean() == pytest.approx(rate, rel=0.05)


def test_bad_time_constants_are_refused():
    with pytest.raises(ValueError, match="bin_size"):
        spike_trace(np.zeros((4, 2)), bin_size=0.0)


def test_rate_readout_learns_next_patch_rates_above_the_null():
    torch.manual_seed(0)
    b, s, n, p, d = 16, 6, 4, 3, 8
    hidden = torch.randn(b, s, n, d)
    weight = torch.randn(d, p) * 0.5
    true_log = (hidden @ weight) - 1.0  # rates of patch t + 1 carried by the state at t
    patches = torch.poisson(torch.exp(true_log[:, :-1]))  # [B, S-1, N, P]
    counts = torch.zeros(b, s * p, n)
    next_patches = patches.permute(0, 1, 3, 2).reshape(b, (s - 1) * p, n)
    counts[:, p:] = next_patches
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, -1] = False  # a padded neuron is left out of the loss
    head = RateReadout(d, p, mean_count=float(counts.mean()))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        loss = next_patch_poisson_loss(head(hidden), counts, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rates = torch.exp(head(hidden)[:, :-1]).detach().numpy()
    bps = bits_per_spike(rates.reshape(-1, p), patches.numpy().reshape(-1, p))
    assert bps > 0.2
