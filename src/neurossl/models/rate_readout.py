"""Rates from dual-axis states: the read-out that lets CalM score bits/spike on spikes.

CalM's own outputs are codes (a categorical over trace shapes) and the direct read-out of
the next patch's normalised frames; neither is a Poisson rate, and bits/spike scores a
rate. This head maps the state of a (neuron, patch step) token to the log-rates of that
neuron's P bins of the *next* patch, so the autoregressive state (which has seen patches
<= t only) predicts counts it has not seen. Log-rates keep the rate positive without a
clamp and make the Poisson NLL convex in the head's output.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class RateReadout(nn.Module):
    """States [B, S, N, D] -> log-rates [B, S, N, P] of the next patch's P bins."""

    def __init__(self, width: int, patch: int, mean_count: float = 0.1) -> None:
        super().__init__()
        self.linear = nn.Linear(width, patch)
        # Start at the mean rate: the first steps fit structure, not the overall scale.
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, math.log(max(mean_count, 1e-6)))

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden)
