"""CalM's objective: batch -> codes -> next-code cross-entropy; rollout; task heads.

:class:`CalmNetwork` bundles what turns a batch (docs/batch_format.md) into codes and
predictions: the per-unit normaliser, the frozen tokenizer, the dual-axis backbone and
the decoding heads. Keeping them in one module means the engine's ``loss_fn(model,
batch)`` contract holds (the tokenizer runs on the device, inside the model) and one
checkpoint restores everything evaluation needs.

Design choices (and why):

- *Frozen tokenizer.* The tokenizer is trained once per dataset and is part of the
  input representation; it never trains with the backbone (its parameters are excluded
  from the optimiser and it stays in eval mode even when the network is put in training
  mode, so Gumbel noise never reaches the codes the backbone sees).
- *Loss.* Cross-entropy of the logits at patch step t against the code at t + 1, over
  real neurons only (padding masked), averaged over predicted tokens.
- *Rollout without a KV cache.* Each forecast step reruns the backbone on the whole
  prefix; the horizons of the benchmark are a few patch steps, and the time attention is
  causal, so this equals cached decoding while keeping one code path.
- *Three forecast modes.* ``greedy`` feeds back and decodes the argmax code;
  ``sample`` draws one code path from the model's distribution; ``expected`` is the
  probability-weighted decode over the code distribution, estimated as the mean of the
  decoded traces of ``samples`` sampled paths (the joint over several steps has K^H
  paths, so it is estimated, not enumerated). ``expected`` is the forecast scored under
  the method's name: it hedges where the future is uncertain instead of committing to
  one code, which lowers squared and absolute error. A mean-field variant (feeding the
  probability-weighted *embedding* back) was tried first and drifted at long horizons,
  because the backbone never sees soft tokens in training; sampled paths stay on the
  training distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.models.dual_axis import DualAxisConfig, DualAxisTransformer
from neurossl.models.tokenizer import Tokenizer

FORECAST_MODES = ("greedy", "expected", "sample")
#: Floor of a unit's standard deviation, so a constant (e.g. dead) ROI is not blown up.
MIN_STD = 1e-3


class UnitScaler(nn.Module):
    """Per-unit z-scoring with each unit's training-window mean and standard deviation.

    Indexed by the dataset's unit vocabulary, so a batch mixing sessions is normalised
    with one gather; padded neurons (unit 0) are masked downstream.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError(f"unit mean {mean.shape} and std {std.shape} must be equal 1-D")
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(np.maximum(std, MIN_STD)))

    def normalize(self, activity: Tensor, unit: Tensor) -> Tensor:
        return (activity - self.mean[unit][:, None]) / self.std[unit][:, None]

    def denormalize(self, traces: Tensor, unit: Tensor) -> Tensor:
        return traces * self.std[unit][:, None] + self.mean[unit][:, None]


@dataclass(frozen=True)
class HeadSpec:
    """One decoding head: ``classes`` for window labels, or a behaviour column."""

    task: str
    label_key: str | None = None
    classes: tuple[float, ...] = ()
    behavior_column: int | None = None
    behavior_mean: float = 0.0
    behavior_std: float = 1.0


class CalmNetwork(nn.Module):
    def __init__(
        self,
        tokenizer: Tokenizer,
        backbone: DualAxisConfig,
        scaler: UnitScaler,
        heads: tuple[HeadSpec, ...] = (),
    ) -> None:
        super().__init__()
        if backbone.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"backbone vocab_size {backbone.vocab_size} != tokenizer {tokenizer.vocab_size}"
            )
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.scaler = scaler
        self.backbone = DualAxisTransformer(backbone)
        self.head_specs = heads
        width, patch = backbone.width, tokenizer.patch
        self.heads = nn.ModuleDict(
            {h.task: nn.Linear(width, len(h.classes) if h.label_key else patch) for h in heads}
        )

    def train(self, mode: bool = True) -> CalmNetwork:
        super().train(mode)
        self.tokenizer.eval()
        return self

    @torch.no_grad()
    def codes(self, batch: dict[str, Tensor]) -> Tensor:
        x = self.scaler.normalize(batch["activity"], batch["unit"])
        x = x * batch["neuron_mask"][:, None, :]
        return self.tokenizer.encode(x)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        codes = self.codes(batch)
        hidden, logits = self.backbone(codes, batch["unit"], batch["session"], batch["neuron_mask"])
        return {"codes": codes, "hidden": hidden, "logits": logits}


def next_token_loss(logits: Tensor, codes: Tensor, neuron_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of logits at t for the code at t + 1 over real neurons; accuracy."""
    pred = logits[:, :-1].float()
    target = codes[:, 1:]
    mask = neuron_mask[:, None, :].expand_as(target)
    ce = F.cross_entropy(pred[mask], target[mask])
    accuracy = (pred[mask].argmax(-1) == target[mask]).float().mean()
    return ce, accuracy


def pretrain_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    out = model(batch)
    ce, acc = next_token_loss(out["logits"], out["codes"], batch["neuron_mask"])
    return ce, {"next_code_ce": float(ce.detach()), "next_code_acc": float(acc)}


def pooled_features(hidden: Tensor, neuron_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Window features [B, D] (mean over real neurons and steps) and per-step [B, S, D]."""
    w = neuron_mask[:, None, :, None].to(hidden.dtype)
    per_step = (hidden * w).sum(2) / w.sum(2).clamp_min(1.0)
    return per_step.mean(1), per_step


def head_outputs(network: CalmNetwork, hidden: Tensor, neuron_mask: Tensor) -> dict[str, Tensor]:
    """Logits [B, C] of window heads; behaviour [B, S*P] (normalised units) of others."""
    window, per_step = pooled_features(hidden, neuron_mask)
    out = {}
    for spec in network.head_specs:
        head = network.heads[spec.task]
        if spec.label_key:
            out[spec.task] = head(window)
        else:
            out[spec.task] = head(per_step).flatten(1)
    return out


def head_losses(
    network: CalmNetwork, outputs: dict[str, Tensor], batch: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Cross-entropy of class heads, MSE of behaviour heads; unlabelled entries ignored."""
    losses = {}
    for spec in network.head_specs:
        pred = outputs[spec.task].float()
        if spec.label_key:
            label = batch[spec.label_key].to(pred.dtype)
            classes = torch.tensor(spec.classes, device=pred.device, dtype=pred.dtype)
            match = label[:, None] == classes[None, :]
            known = match.any(1)
            if not known.any():
                continue
            losses[spec.task] = F.cross_entropy(pred[known], match[known].float().argmax(1))
        else:
            target = batch["behavior"][:, : pred.shape[1], spec.behavior_column]
            target = (target - spec.behavior_mean) / spec.behavior_std
            known = ~torch.isnan(target)
            if not known.any():
                continue
            losses[spec.task] = F.mse_loss(pred[known], target[known])
    return losses


def make_finetune_loss(next_token_weight: float):
    """Loss of the supervised fine-tune: every head plus the next-code objective.

    Keeping the next-code term (weight ``next_token_weight``) regularises the backbone
    towards the dynamics it was pretrained on while the heads pull it towards labels.
    """

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        out = model(batch)
        network = model.module if hasattr(model, "module") else model
        ce, _ = next_token_loss(out["logits"], out["codes"], batch["neuron_mask"])
        losses = head_losses(
            network, head_outputs(network, out["hidden"], batch["neuron_mask"]), batch
        )
        total = next_token_weight * ce + sum(losses.values())
        metrics = {"next_code_ce": float(ce.detach())}
        metrics.update({f"loss_{k}": float(v.detach()) for k, v in losses.items()})
        return total, metrics

    return loss_fn


@torch.no_grad()
def forecast(
    network: CalmNetwork,
    batch: dict[str, Tensor],
    horizon_steps: int,
    mode: str = "expected",
    seed: int = 0,
    samples: int = 16,
) -> Tensor:
    """Roll out ``horizon_steps`` patch steps after the batch's activity (the context).

    Returns the forecast in dF/F (normalisation undone), [B, horizon_steps * P, N].
    ``expected`` averages ``samples`` sampled rollouts; sampling uses a generator seeded
    with ``seed``, so a forecast is reproducible and a shorter horizon is a prefix of a
    longer one.
    """
    if mode not in FORECAST_MODES:
        raise ValueError(f"forecast mode {mode!r}; expected one of {FORECAST_MODES}")
    if horizon_steps < 1 or samples < 1:
        raise ValueError(f"horizon_steps and samples must be >= 1, got {horizon_steps}, {samples}")
    network.eval()
    generator = torch.Generator(device=batch["activity"].device).manual_seed(seed)
    repeats = samples if mode == "expected" else 1
    keys = ("activity", "unit", "session", "neuron_mask")
    rep = {k: batch[k].repeat_interleave(repeats, dim=0) for k in keys}
    codes = _rollout(network, rep, horizon_steps, greedy=mode == "greedy", generator=generator)
    traces = network.tokenizer.decode(codes)[:, -horizon_steps * network.tokenizer.patch :]
    future = network.scaler.denormalize(traces.float(), rep["unit"])
    return future.view(-1, repeats, *future.shape[1:]).mean(1)


def _rollout(
    network: CalmNetwork,
    batch: dict[str, Tensor],
    horizon_steps: int,
    greedy: bool,
    generator: torch.Generator,
) -> Tensor:
    """Context codes followed by ``horizon_steps`` generated codes, [B, S + H, N]."""
    backbone = network.backbone
    codes = network.codes(batch)
    for _ in range(horizon_steps):
        _, logits = backbone(codes, batch["unit"], batch["session"], batch["neuron_mask"])
        probs = logits[:, -1].float().softmax(-1)  # [B, N, K]
        if greedy:
            choice = probs.argmax(-1)
        else:
            flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
            choice = flat.view(probs.shape[:-1])
        codes = torch.cat([codes, choice[:, None]], dim=1)
    return codes
