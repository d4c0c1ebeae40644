"""AdamW and a per-step learning-rate schedule, without ``torch.optim``'s machinery.

Why not ``torch.optim.AdamW``: constructing any ``torch.optim.Optimizer`` imports
TorchDynamo (its methods are wrapped by ``torch._disable_dynamo``), which costs 1-2.5 s
of CPU in every training job, a fresh process each; the default workflow runs about 20
of them, each training for 5-60 s (in whole runs the saving is within run-to-run noise:
benchmarks/RESULTS.md). The arithmetic here is torch's multi-tensor AdamW
(``foreach=True``, no AMSGrad) op for op, so the weights it produces are bit-identical
to it (tested); only the bookkeeping is ours.

The update per parameter ``p`` with gradient ``g`` at step ``t`` (decoupled weight decay,
Loshchilov & Hutter)::

    p   <- p * (1 - lr * wd)
    m   <- lerp(m, g, 1 - beta1)
    v   <- v * beta2 + (1 - beta2) * g * g
    p   <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

#: torch's defaults, so call sites that relied on them keep their behaviour.
DEFAULT_BETAS = (0.9, 0.999)
DEFAULT_EPS = 1e-8
DEFAULT_WEIGHT_DECAY = 0.01


class AdamW:
    """Parameter groups of dicts with ``params``, ``lr``, ``weight_decay``, as in torch.

    ``state_dict`` / ``load_state_dict`` round-trip the moments and step counts, so a
    checkpointed run resumes exactly. A parameter whose ``grad`` is None is skipped by
    ``step`` (and gets no state) until it has one, as in torch.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        betas: tuple[float, float] = DEFAULT_BETAS,
        eps: float = DEFAULT_EPS,
        weight_decay: float = DEFAULT_WEIGHT_DECAY,
    ) -> None:
        items = list(params)
        if not items:
            raise ValueError("AdamW got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.param_groups: list[dict[str, Any]] = []
        for group in groups:
            merged = defaults | dict(group)
            merged["params"] = list(group["params"])
            merged["initial_lr"] = merged["lr"]
            self.param_groups.append(merged)
        self.state: dict[Tensor, dict[str, Any]] = {}

    def _parameters(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in params:
            if p not in self.state:
                self.state[p] = {
                    "step": 0,
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        for s in states:
            s["step"] += 1
        if wd != 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        # Step counts are Python floats of whole numbers, as torch's float32 step
        # tensors read back, so the bias corrections round exactly as torch's do.
        step_sizes = [(lr / (1 - beta1 ** float(s["step"]))) * -1 for s in states]
        corrections = [(1 - beta2 ** float(s["step"])) ** 0.5 for s in states]
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, corrections)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)

    def state_dict(self) -> dict[str, Any]:
        """Moments and steps keyed by the parameter's position over all groups."""
        position = {p: i for i, p in enumerate(self._parameters())}
        groups = [
            {k: v for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])}
            for g in self.param_groups
        ]
        state = {
            position[p]: {"step": s["step"], "exp_avg": s["exp_avg"], "exp_avg_sq": s["exp_avg_sq"]}
            for p, s in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        sizes = [g["n_params"] for g in saved["param_groups"]]
        if sizes != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(
                f"optimizer state has parameter groups of sizes {sizes}; this optimizer has "
                f"{[len(g['params']) for g in self.param_groups]}"
            )
        for group, stored in zip(self.param_groups, saved["param_groups"], strict=True):
            group.update({k: v for k, v in stored.items() if k != "n_params"})
            group["betas"] = tuple(group["betas"])
        params = self._parameters()
        self.state = {}
        for index, s in saved["state"].items():
            p = params[int(index)]
            self.state[p] = {
                "step": s["step"],
                "exp_avg": s["exp_avg"].to(device=p.device, dtype=p.dtype),
                "exp_avg_sq": s["exp_avg_sq"].to(device=p.device, dtype=p.dtype),
            }


class LambdaSchedule:
    """Sets each group's ``lr`` to its initial lr times ``factor(step)`` (torch's LambdaLR).

    ``step()`` after each optimizer step; the factor for step 0 applies from the start.
    """

    def __init__(self, optimizer: AdamW, factor: Callable[[int], float]) -> None:
        self.optimizer, self.factor, self.last_step = optimizer, factor, 0
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.factor(self.last_step)

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, int]:
        return {"last_step": self.last_step}

    def load_state_dict(self, saved: dict[str, int]) -> None:
        self.last_step = int(saved["last_step"])
        self._apply()


class CosineSchedule:
    """Cosine decay of each group's lr to 0 over ``steps`` (torch's CosineAnnealingLR).

    Computed the way torch computes it, step by step from the previous lr, not in closed
    form, so the learning rates match torch's to the last bit. Stepping past ``steps``
    is an error: torch would start a second, rising half-period there.
    """

    def __init__(self, optimizer: AdamW, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"a cosine schedule needs steps >= 1, got {steps}")
        self.optimizer, self.steps, self.last_step = optimizer, steps, 0

    def step(self) -> None:
        if self.last_step >= self.steps:
            raise RuntimeError(f"cosine schedule stepped past its {self.steps} steps")
        self.last_step += 1
        k, t = self.last_step, self.steps
        ratio = (1 + math.cos(math.pi * k / t)) / (1 + math.cos(math.pi * (k - 1) / t))
        for group in self.optimizer.param_groups:
            group["lr"] = ratio * group["lr"]
