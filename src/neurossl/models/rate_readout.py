"""Rates from dual-axis states: the read-out that lets CalM score bits/spike on spikes.

CalM's own outputs are codes (a categorical over trace shapes) and the direct read-out of
the next patch's normalised frames; neither is a Poisson rate, and bits/spike scores a
rate. This head maps the state of a (neuron, patch step) token to the log-rates of P
bins of that neuron: of the *next* patch for a visible token (the autoregressive state,
which has seen patches <= t only, predicts counts it has not seen), or of its own patch
for a hidden token (:mod:`neurossl.objectives.calm_spikes`). Log-rates keep the rate
positive without a clamp and make the Poisson NLL convex in the head's output.

With ``n_units``, each unit also gets its own weights on a rank-``rank`` projection of
the *population* state of its patch step (the mean state over the step's real neurons),
i.e. log-rate = offset + C_unit . latent_t, a latent-factor read-out like a stitcher's.
Why: a hidden token has lost its own input, and in a briefly trained backbone its state
is mostly its unit embedding (on the default synthetic data it varied ~10x less over
time than across neurons, and a shared map of it stayed at the null), while the
population state carries the step's activity; units differ in tuning and sign, so each
needs its own weights. Low rank, so each unit fits few weights from a session's few
windows. The unit weights start at zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RateReadout(nn.Module):
    """States [B, S, N, D] (and units [B, N]) -> log-rates [B, S, N, P] of P bins."""

    def __init__(
        self, width: int, patch: int, mean_count: float = 0.1, n_units: int = 0, rank: int = 4
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(width, patch)
        # Start at the mean rate: the first steps fit structure, not the overall scale.
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, math.log(max(mean_count, 1e-6)))
        self.project = nn.Linear(width, rank) if n_units else None
        self.unit_weight = nn.Parameter(torch.zeros(n_units, rank, patch)) if n_units else None

    def forward(
        self, hidden: Tensor, unit: Tensor | None = None, neuron_mask: Tensor | None = None
    ) -> Tensor:
        out = self.linear(hidden)
        if self.project is None or self.unit_weight is None:
            return out
        if unit is None or neuron_mask is None:
            raise ValueError("a per-unit RateReadout needs the batch's units and neuron mask")
        real = neuron_mask[:, None, :, None].to(hidden.dtype)  # [B, 1, N, 1]
        population = (hidden * real).sum(2) / real.sum(2).clamp_min(1.0)  # [B, S, D]
        z = self.project(population)  # [B, S, r]
        return out + torch.einsum("bsr,bnrp->bsnp", z, self.unit_weight[unit].to(z.dtype))
