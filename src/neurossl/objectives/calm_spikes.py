"""CalM on binned spikes: the tokenizer's input trace, the rate losses and the hidden tokens.

The pieces that fit the objective to counts (the family wires them in
:mod:`neurossl.methods.calm_family`), each choice and why:

- *Smoothed, not quantised.* CalM's tokenizer learns a shared vocabulary of short trace
  shapes (seeds/calm.txt: "maps single-neuron traces into a shared discrete vocabulary").
  Raw per-bin counts of most cortical units are 0 or 1 in 10-20 ms bins, so patches of
  raw or quantised counts form a tiny alphabet dominated by the all-zero patch and the
  tokenizer would spend its vocabulary on spike positions. Smoothing turns counts into a
  rate-like trace whose patches have shapes (rising, decaying, sustained), the kind of
  signal the tokenizer was designed for, and the whole tokenizer (patching, per-unit
  z-scoring on training windows, reconstruction loss) applies unchanged.
- *Causal exponential kernel.* The filter is y[t] = a y[t-1] + (1 - a) x[t] with
  a = exp(-bin / tau), i.e. what a calcium indicator does to spikes (fast rise, slow
  exponential decay). It is causal on purpose: the tokenizer's encoder is causal so that
  a forecast's context codes never depend on the future (models/tokenizer.py), and a
  symmetric (Gaussian) kernel would leak future spikes into the context's trace.
- *Square root.* Poisson counts have variance equal to their mean; the square root
  (Anscombe's variance-stabilising transform, up to its constant) makes the trace's
  noise roughly uniform across low- and high-rate units, so one z-scored reconstruction
  loss serves both.
- *Rates from states, scored as Poisson.* Bits/spike needs rates; they come from
  :class:`neurossl.models.rate_readout.RateReadout` on the backbone's states, trained with
  the Poisson NLL of the next patch's raw counts (not from inverting the smoothed trace,
  which would be a noisy deconvolution that can go negative).
- *Hidden tokens answer the queries.* Co-smoothing, inter/intra-region prediction and
  forecasting ask for rates of entries the model must not see. A query hides whole
  tokens (:func:`query_hide`: a token is hidden when any of its bins is); a hidden
  token's code and counts are replaced by one learned input while its unit and session
  embeddings stay, so it still says which neuron and when it stands for, and the neuron
  axis lets it read the visible neurons of the same patch. Its state gives the rates of
  its own P bins (a second :class:`~neurossl.models.rate_readout.RateReadout`,
  :func:`hidden_poisson_loss`). One read-out for all four tasks, as the other families
  answer every query with one read-out. Why not the next-patch rates of the state at
  t - 1: co-smoothing's most informative input is the held-in neurons' activity in the
  *same* bins, which that state has not seen.
- *Training the hidden tokens.* :func:`sample_hide` draws the queries' two shapes (whole
  neurons, the window's last steps) on training windows, at ``hide_ratio``, so the
  read-out learns what a hidden token is before it is asked on test windows.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, Tensor)

#: Decay time constant of the smoothing kernel, seconds (about GCaMP6f's decay, and the
#: scale of NLB's smoothing baselines' kernels).
DEFAULT_TAU_S = 0.05


def spike_trace(counts: np.ndarray, bin_size: float, tau_s: float = DEFAULT_TAU_S) -> np.ndarray:
    """Counts [..., T, N] -> square root of their causal exponential smoothing, same shape."""
    smoothed = _smooth(np.asarray(counts, dtype=np.float64), _decay(bin_size, tau_s))
    return np.sqrt(np.maximum(smoothed, 0.0)).astype(np.float32)


def next_patch_poisson_loss(log_rates: Tensor, counts: Tensor, neuron_mask: Tensor) -> Tensor:
    """Poisson NLL of log-rates at patch step t [B, S, N, P] for the counts of patch t + 1.

    ``counts`` [B, T, N] are the window's raw counts (T = S * P); the last step has no next
    patch and padded neurons (``neuron_mask`` [B, N] False) are left out.
    """
    b, s, n, p = log_rates.shape
    patches = counts[:, : s * p].reshape(b, s, p, n).permute(0, 1, 3, 2)  # [B, S, N, P]
    mask = neuron_mask[:, None, :].expand(b, s - 1, n)
    return F.poisson_nll_loss(
        log_rates[:, :-1][mask].float(), patches[:, 1:][mask].float(), log_input=True
    )


def spike_trace_tensor(counts: Tensor, bin_size: float, tau_s: float = DEFAULT_TAU_S) -> Tensor:
    """:func:`spike_trace` of counts [B, T, N] in torch (float32), on the counts' device."""
    return _smooth(counts.float(), _decay(bin_size, tau_s)).clamp_min(0.0).sqrt()


def _smooth(x: ArrayOrTensor, a: float) -> ArrayOrTensor:
    """y[t] = a y[t-1] + (1 - a) x[t] along axis -2 (y[-1] = 0), numpy or torch alike.

    A loop over the T bins of a window (tens to hundreds): exact (the same products and
    sums as scipy.signal.lfilter's, so bit-identical in float64), on any device, and
    without scipy.signal, whose import (about a second) every spiking CalM job would
    otherwise pay for this one first-order filter.
    """
    y = (1.0 - a) * x
    for t in range(1, x.shape[-2]):
        y[..., t, :] += a * y[..., t - 1, :]
    return y


def _decay(bin_size: float, tau_s: float) -> float:
    if bin_size <= 0 or tau_s <= 0:
        raise ValueError(f"spike_trace: bin_size {bin_size} and tau_s {tau_s} must be > 0")
    return math.exp(-bin_size / tau_s)


def query_hide(visible: np.ndarray, patch: int) -> np.ndarray:
    """A query's visible bins [T, N] -> hidden tokens bool [ceil(T / P), N].

    A token is hidden when any of its P bins is hidden by the query or lies past the
    window's end (the last, partial patch), so no hidden count reaches a visible token.
    """
    t, n = visible.shape
    steps = -(-t // patch)
    hidden = np.ones((steps * patch, n), dtype=bool)
    hidden[:t] = ~np.asarray(visible, dtype=bool)
    return hidden.reshape(steps, patch, n).any(axis=1)


def sample_hide(neuron_mask: Tensor, steps: int, ratio: float) -> Tensor:
    """Hidden tokens bool [B, S, N] drawn per window like the spiking queries' shapes.

    Half of the windows hide a random ``ratio`` of their neurons at every step
    (co-smoothing, inter- and intra-region queries hide whole neurons), the others hide
    their last 1..ceil(ratio * S) steps for every neuron (forecasting hides the end).
    """
    b, n = neuron_mask.shape
    device = neuron_mask.device
    neurons = torch.rand(b, 1, n, device=device) < ratio
    last = torch.randint(1, max(1, math.ceil(ratio * steps)) + 1, (b, 1, 1), device=device)
    future = torch.arange(steps, device=device)[None, :, None] >= steps - last
    by_neuron = torch.rand(b, 1, 1, device=device) < 0.5
    hide = torch.where(by_neuron, neurons.expand(b, steps, n), future.expand(b, steps, n))
    return hide & neuron_mask[:, None, :]


def hidden_poisson_loss(log_rates: Tensor, counts: Tensor, hide: Tensor) -> Tensor:
    """Poisson NLL of log-rates [B, S, N, P] for the counts of the *same* patch, over the
    hidden tokens ``hide`` [B, S, N] (padded neurons must be False there)."""
    b, s, n, p = log_rates.shape
    patches = counts[:, : s * p].reshape(b, s, p, n).permute(0, 1, 3, 2)
    return F.poisson_nll_loss(log_rates[hide].float(), patches[hide].float(), log_input=True)
