"""CalM on binned spikes: the tokenizer's input trace and the Poisson loss of rate read-outs.

Not wired into the workflow yet (the catalog still lists CalM on calcium only); these are
the two pieces that fit the objective to counts, each choice and why:

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
"""

from __future__ import annotations

import math

import numpy as np
import torch.nn.functional as F
from scipy.signal import lfilter
from torch import Tensor

#: Decay time constant of the smoothing kernel, seconds (about GCaMP6f's decay, and the
#: scale of NLB's smoothing baselines' kernels).
DEFAULT_TAU_S = 0.05


def spike_trace(counts: np.ndarray, bin_size: float, tau_s: float = DEFAULT_TAU_S) -> np.ndarray:
    """Counts [..., T, N] -> square root of their causal exponential smoothing, same shape."""
    if bin_size <= 0 or tau_s <= 0:
        raise ValueError(f"spike_trace: bin_size {bin_size} and tau_s {tau_s} must be > 0")
    a = math.exp(-bin_size / tau_s)
    smoothed = lfilter([1.0 - a], [1.0, -a], np.asarray(counts, dtype=np.float64), axis=-2)
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
