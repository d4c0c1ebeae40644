"""In-memory batch sources for the engine's short fits (tokenizer, head probe, forecasters).

They speak the engine's one batch protocol, ``iter_from(step, rank, world_size)``, which
:class:`neurossl.data.loader.WindowLoader` speaks for window datasets: the batch of
global step ``k`` is a pure function of the seed and ``k``, so these fits could resume
exactly like the families' stages even though they are short enough never to checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

Batch = dict[str, Tensor]


class RandomRows:
    """Steps of ``batch_size`` rows drawn without replacement from equally long tensors.

    Each step draws a fresh permutation from one generator seeded with ``seed``; a rank
    of a DDP run takes every ``world_size``-th row of that step's batch.
    """

    def __init__(self, tensors: Batch, batch_size: int, seed: int) -> None:
        sizes = {int(t.shape[0]) for t in tensors.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"RandomRows needs non-empty tensors of one length, got {sizes}")
        self.tensors, self.seed = tensors, seed
        self.rows = sizes.pop()
        self.batch_size = min(batch_size, self.rows)

    def iter_from(self, step: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(step):
            torch.randperm(self.rows, generator=generator)
        while True:
            rows = torch.randperm(self.rows, generator=generator)[: self.batch_size]
            rows = rows[rank::world_size]
            yield {k: v[rows.to(v.device)] for k, v in self.tensors.items()}


class FullBatches:
    """Every step is the whole fixed list of batches (full-batch training).

    The engine takes a list as one step whose loss is the row-weighted mean of its
    parts, so batches may differ in shape (e.g. one per session). Every rank gets the
    whole list, so DDP's gradient average equals the single-process gradient.
    """

    def __init__(self, batches: list[Batch]) -> None:
        if not batches:
            raise ValueError("FullBatches needs at least one batch")
        self.batches = batches

    def iter_from(self, step: int, rank: int = 0, world_size: int = 1) -> Iterator[list[Batch]]:
        while True:
            yield self.batches
