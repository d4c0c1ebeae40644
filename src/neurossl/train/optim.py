"""AdamW with decoupled weight decay on weights only, and warm-up + cosine decay.

Biases, norms and embeddings (including session/prompt tokens) get no weight decay:
decaying them shrinks per-session parameters that see few updates towards zero, which
hurts new-session adaptation. This is the usual transformer recipe.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from neurossl.train.adamw import AdamW, LambdaSchedule


def trainable_parameters(
    model: nn.Module, trainable: Callable[[str], bool] | None
) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs that train; a filter picks them by name (None = all)."""
    params = [(n, p) for n, p in model.named_parameters() if trainable is None or trainable(n)]
    if not params:
        raise ValueError("the trainable-parameter filter selected no parameter of the model")
    return params


def make_optimizer(params: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float) -> AdamW:
    decay = [p for n, p in params if p.ndim >= 2 and "embed" not in n and "token" not in n]
    ids = {id(p) for p in decay}
    no_decay = [p for _, p in params if id(p) not in ids]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.95))


def warmup_cosine(warmup_steps: int, max_steps: int, floor: float = 0.1) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then cosine decay to ``floor`` at ``max_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, max_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_scheduler(optimizer: AdamW, warmup_steps: int, max_steps: int) -> LambdaSchedule:
    return LambdaSchedule(optimizer, warmup_cosine(warmup_steps, max_steps))
