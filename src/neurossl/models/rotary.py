"""Rotary embeddings of continuous timestamps (seconds), as in POYO/POYO+.

Tokens of a Perceiver have no fixed positions: a (neuron, sample) token, a latent and an
output query each carry a time in seconds. Rotating query and key features by angles
``t * omega`` makes their dot product depend on the time *difference* only, so a model
trained on 2 s windows that start at 0 also works on windows that start elsewhere, and
no position table limits the window length.

Only the first half of each head's features is rotated (as in POYO): the other half
stays time-free, so a query can still match a key by content regardless of distance.
Angles are computed in float32 even under bf16 autocast: ``t * omega`` reaches 1e3 rad
for a few seconds at the fastest frequency, far beyond bf16's 8-bit mantissa.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RotaryTime(nn.Module):
    """Angles of timestamps for the rotated half of a head of ``dim_head`` features.

    Periods are log-spaced between ``t_min`` and ``t_max`` seconds: the shortest
    resolves neighbouring frames, the longest exceeds the window so offsets stay unique.
    """

    def __init__(self, dim_head: int, t_min: float, t_max: float) -> None:
        super().__init__()
        if dim_head % 4:
            raise ValueError(f"rotary time needs dim_head divisible by 4, got {dim_head}")
        if not 0 < t_min < t_max:
            raise ValueError(f"rotary periods need 0 < t_min < t_max, got {t_min}, {t_max}")
        n_freq = dim_head // 4
        periods = t_min * (t_max / t_min) ** torch.linspace(0.0, 1.0, n_freq)
        self.register_buffer("omega", 2 * math.pi / periods, persistent=False)
        self.n_freq = n_freq

    def forward(self, time: Tensor) -> Tensor:
        """Unit complex rotations [B, 1, L, n_freq] for timestamps [B, L] (broadcast over heads)."""
        angles = time.float()[:, None, :, None] * self.omega.float()
        return torch.polar(torch.ones_like(angles), angles)


def rotate(x: Tensor, rotation: Tensor, inverse: bool = False) -> Tensor:
    """Rotate the first ``2 * n_freq`` features of ``x`` [B, H, L, Dh] by ``rotation``.

    Features are paired as (2i, 2i + 1) and each pair is multiplied by a unit complex
    number (one fused kernel instead of four real products); ``inverse`` rotates by the
    negative angle, which undoes a rotation at the same timestamps.
    """
    n = rotation.shape[-1]
    head = x[..., : 2 * n].float().reshape(*x.shape[:-1], n, 2)
    turned = torch.view_as_complex(head) * (rotation.conj() if inverse else rotation)
    rotated = torch.view_as_real(turned).flatten(-2).to(x.dtype)
    return torch.cat((rotated, x[..., 2 * n :]), dim=-1)
