"""Quantisers of the CalM tokenizer: continuous patch features -> one shared vocabulary.

Two interchangeable quantisers, both returning ``(embedding, codes, aux_loss, probs)``:

- :class:`GumbelQuantizer` (the published choice): logits over K codes, a straight-
  through Gumbel-softmax sample during training (temperature annealed by the caller from
  soft to nearly hard) and the argmax at inference. Against index collapse, the code
  vectors are pushed towards orthogonality: ``||C_n C_n^T - I||_F^2 / K^2`` on the
  row-normalised codebook ``C_n``. When K exceeds the width the codes cannot be exactly
  orthogonal, and the penalty then spreads them as evenly as the width allows. A small
  KL term between the batch-mean code distribution and uniform (as in DALL-E's dVAE)
  keeps the early, high-temperature phase from settling on a few codes.
- :class:`FSQuantizer` (finite scalar quantisation, Mentzer et al. 2023), the
  alternative. Chosen over an EMA codebook with dead-code restarts because it has *no*
  codebook to collapse: each of d projected channels is bounded with tanh and rounded to
  one of L_i levels (straight-through), and the code is the mixed-radix index of the d
  digits. Usage is high by construction, there are no auxiliary losses or restart
  heuristics to tune, and it is deterministic, so it is a clean control for whether the
  Gumbel machinery is worth its hyper-parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QUANTIZERS = ("gumbel", "fsq")


def orthogonality_loss(codebook: Tensor) -> Tensor:
    """Mean squared off-identity Gram entry of the row-normalised codebook [K, D]."""
    c = F.normalize(codebook, dim=-1)
    gram = c @ c.T
    eye = torch.eye(c.shape[0], device=c.device, dtype=c.dtype)
    return ((gram - eye) ** 2).sum() / c.shape[0] ** 2


class GumbelQuantizer(nn.Module):
    def __init__(
        self, width: int, vocab_size: int, ortho_weight: float = 0.1, kl_weight: float = 0.01
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size = vocab_size
        self.to_logits = nn.Linear(width, vocab_size)
        self.codebook = nn.Parameter(torch.randn(vocab_size, width) / math.sqrt(width))
        self.ortho_weight = ortho_weight
        self.kl_weight = kl_weight
        self.temperature = 1.0

    def embed(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.codebook)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        logits = self.to_logits(z).float()
        probs = logits.softmax(-1)
        codes = logits.argmax(-1)
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=self.temperature, hard=True)
            emb = onehot.to(self.codebook.dtype) @ self.codebook
            mean_probs = probs.reshape(-1, self.vocab_size).mean(0)
            kl = (mean_probs * (mean_probs * self.vocab_size).clamp_min(1e-9).log()).sum()
            aux = self.ortho_weight * orthogonality_loss(self.codebook) + self.kl_weight * kl
        else:
            emb = self.embed(codes)
            aux = torch.zeros((), device=z.device)
        return emb, codes, aux, probs


def fsq_levels(vocab_size: int) -> list[int]:
    """Levels per channel whose product is ``vocab_size``, each as close to ~6 as divisors allow.

    FSQ's authors recommend 5-8 levels per channel; fewer channels with more levels keep
    the projection small. Vocabulary sizes with a prime factor above 8 are refused rather
    than silently rounded, so a vocabulary sweep compares the sizes it names.
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    dims = max(1, math.ceil(math.log(vocab_size) / math.log(8)))
    levels, rest = [], vocab_size
    for k in range(dims, 0, -1):
        if k == 1:
            levels.append(rest)
            break
        target = rest ** (1 / k)
        divisors = [d for d in range(2, rest) if rest % d == 0]
        if not divisors:
            break
        choice = min(divisors, key=lambda d: (abs(d - target), -d))
        levels.append(choice)
        rest //= choice
    if math.prod(levels) != vocab_size or max(levels) > 8:
        raise ValueError(
            f"FSQ cannot build a vocabulary of {vocab_size} codes from levels <= 8 "
            "(use a size whose prime factors are <= 7, e.g. 16, 64, 240, 256)"
        )
    return sorted(levels, reverse=True)


class FSQuantizer(nn.Module):
    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        levels = torch.tensor(fsq_levels(vocab_size), dtype=torch.long)
        self.register_buffer("levels", levels, persistent=False)
        radix = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), levels[:-1]]), 0)
        self.register_buffer("radix", radix, persistent=False)
        self.down = nn.Linear(width, levels.numel())
        self.up = nn.Linear(levels.numel(), width)
        self.temperature = 1.0  # unused; kept so callers anneal either quantiser alike

    def _bound(self, z: Tensor) -> Tensor:
        levels = self.levels.to(z.dtype)
        half = (levels - 1) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def _digits_to_unit(self, digits: Tensor) -> Tensor:
        """Integer digits in [0, L) -> values in [-1, 1] fed to the up-projection."""
        half = (self.levels // 2).to(torch.float32)
        return (digits.float() - half) / half

    def embed(self, codes: Tensor) -> Tensor:
        digits = (codes[..., None] // self.radix) % self.levels
        return self.up(self._digits_to_unit(digits))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        bounded = self._bound(self.down(z).float())
        rounded = bounded + (bounded.round() - bounded).detach()
        half = (self.levels // 2).to(rounded.dtype)
        digits = (rounded.detach().round() + half).long()
        codes = (digits * self.radix).sum(-1)
        emb = self.up((rounded) / half)
        probs = F.one_hot(codes, self.vocab_size).float()
        return emb, codes, torch.zeros((), device=z.device), probs
