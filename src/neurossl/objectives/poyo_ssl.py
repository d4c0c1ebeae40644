"""POYO-SSL pretraining: masked reconstruction of dF/F or spike counts on a neuron diet.

Masking (the exact choice the report quotes): each neuron's sequence of tokens in a
window is cut into consecutive segments of ``ceil(span / frames_per_token)`` tokens,
starting at a random phase drawn per (window, neuron), and every segment is masked
independently with probability ``ratio``; a masked token hides all of its samples.
Defaults: ``ratio`` = 0.3, ``span`` = 6 samples (0.2 s at 30 Hz; 2 tokens of 3 samples
at the CPU presets), so about a third of each neuron's samples are hidden in contiguous
runs of >= 6 samples (adjacent masked segments merge into longer runs); 0.3 did as
well as 0.5 on the validation windows of the default data and leaves more context per
window. Masked tokens keep their unit embedding and time but their value embedding is
replaced by a learned mask token; reconstruction queries (session + reconstruction-task
+ unit embedding, at the token's time) predict the hidden (z-scored) dF/F samples, and
the loss is the mean squared error over masked samples of real (non-padded) neurons
only.

Why spans and not single samples: dF/F is low-pass (indicator decay of a few hundred
ms), so an isolated masked sample is interpolated from its neighbours without learning
anything about the population; a 0.2 s gap has to be filled from other neurons and
longer context.

Auxiliary decoding (optional, ``auxiliary`` heads of :func:`reconstruction_loss_fn`):
the published recipe adds a small weight times a decoding loss on the pretraining
sessions' labels. The heads read the same masked forward pass as the reconstruction, so
the term costs a few readout queries instead of a second pass through the encoder, and
it asks the latents to carry the label from partly hidden inputs.

Spike counts (``likelihood="poisson"``): the same masking and queries, but each query
predicts the log-rate of its hidden bins and the loss is the Poisson negative
log-likelihood of the raw counts (``batch["counts"]``; the value embedding still reads
z-scored counts), as MtM/NDT score masked spiking entries. The log-rate is the head's
output plus the log of the neuron's mean count on the train windows
(``batch["log_mean"]``), so an untrained readout already predicts each neuron's mean rate
(bits/spike near 0, not far below it), as NDT's calibrated read-out does. A squared error
on z-scored counts would weigh a silent bin of a sparse neuron like a burst and give no
rate to score with bits/spike.

Neuron diet (the POYO-SSL idea): pretraining sees only the neurons of one group of the
split step, which scored skewness and kurtosis on *training windows only*:
``predictable`` (POYO-SSL), ``all`` (the mixed ablation) or ``unpredictable`` (the
reverse ablation). The diet applies to any objective; here it selects the neurons a
:class:`~neurossl.data.loader.WindowDataset` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.data.splits import Splits
from neurossl.models.perceiver import RECONSTRUCTION
from neurossl.train_logs import TOKENS

DIETS = ("predictable", "all", "unpredictable")
DEFAULT_MASK_RATIO = 0.3
DEFAULT_MASK_SPAN = 6
#: What a reconstruction query predicts: z-scored dF/F (squared error) or a spike
#: count's log-rate (Poisson NLL).
LIKELIHOODS = ("gaussian", "poisson")


def diet_neuron_ids(
    splits: Splits, modality: str, sessions: Sequence[str], diet: str
) -> dict[str, list[str]] | None:
    """Neuron ids each session contributes under a diet; None means every neuron.

    Sessions whose group is empty are left out (a session without predictable neurons
    has nothing to offer a predictable-only diet); an empty diet overall is an error.
    """
    if diet not in DIETS:
        raise ValueError(f"hparams 'neuron_diet' is {diet!r}; expected one of {DIETS}")
    if diet == "all":
        return None
    chosen = {s: list(splits.neuron_group(modality, s, diet)) for s in sessions}
    chosen = {s: ids for s, ids in chosen.items() if ids}
    if not chosen:
        raise ValueError(
            f"splits of {splits.dataset!r} have no {diet!r} {modality} neurons in sessions "
            f"{list(sessions)}; check the predictability thresholds of the split step"
        )
    return chosen


def span_mask(neuron_mask: Tensor, n_bins: int, ratio: float, span: int) -> Tensor:
    """Boolean [B, T, N] mask of contiguous spans per neuron (see module docstring).

    Draws from torch's global RNG on the mask's device, so the engine's seeding and its
    forked RNG during validation make the masks reproducible.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    if span < 1:
        raise ValueError(f"mask span must be >= 1 sample, got {span}")
    b, n = neuron_mask.shape
    device = neuron_mask.device
    phase = torch.randint(0, span, (b, 1, n), device=device)
    segment = (torch.arange(n_bins, device=device)[None, :, None] + phase) // span  # [B, T, N]
    n_segments = (n_bins + span - 1) // span + 1
    hidden = torch.rand(b, n_segments, n, device=device) < ratio
    return torch.gather(hidden, 1, segment) & neuron_mask[:, None, :]


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean squared error over the True entries of ``mask``, and how many there were.

    Zero (with a gradient path) when nothing is masked, so a rare empty draw does not
    turn into NaN.
    """
    count = mask.sum()
    squared = (pred.float() - target.float()).square()
    loss = torch.where(mask, squared, torch.zeros_like(squared)).sum() / count.clamp(min=1)
    return loss, count


def log_rates(out: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """Log expected counts [B, T, N]: the reconstruction output plus each neuron's log mean
    count (``batch["log_mean"]`` [B, N], see the module docstring)."""
    return out.float() + batch["log_mean"][:, None, :].float()


def masked_poisson_nll(log_rate: Tensor, counts: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Poisson NLL (without the log k! constant) over the True entries of ``mask``."""
    count = mask.sum()
    nll = F.poisson_nll_loss(log_rate, counts.float(), log_input=True, reduction="none")
    loss = torch.where(mask, nll, torch.zeros_like(nll)).sum() / count.clamp(min=1)
    return loss, count


def token_span_mask(
    neuron_mask: Tensor, n_bins: int, ratio: float, span: int, frames_per_token: int
) -> Tensor:
    """[B, T, N] span mask drawn on the model's tokens and expanded to their samples.

    With several samples per token, masking whole tokens keeps a masked sample from
    being copied from an unmasked sample of the same token; ``span`` (in samples) is
    rounded up to whole tokens.
    """
    f = frames_per_token
    n_tokens = -(-n_bins // f)
    mask = span_mask(neuron_mask, n_tokens, ratio, -(-span // f))
    return mask.repeat_interleave(f, dim=1)[:, :n_bins]


class AuxiliaryHead(Protocol):
    """What the auxiliary term needs of a decoding head (``methods.task_heads.TaskHead``)."""

    name: str

    def loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor: ...


def reconstruction_loss_fn(
    ratio: float = DEFAULT_MASK_RATIO,
    span: int = DEFAULT_MASK_SPAN,
    frames_per_token: int = 1,
    auxiliary: Sequence[AuxiliaryHead] = (),
    auxiliary_weight: float = 0.0,
    reconstruction_weight: float = 1.0,
    likelihood: str = "gaussian",
) -> Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]:
    """The engine's ``loss_fn`` for masked reconstruction (batch rows already mapped).

    ``frames_per_token`` must be the model's (:class:`~neurossl.models.perceiver.PerceiverConfig`).
    The loss is ``reconstruction_weight`` x the masked MSE, plus, with ``auxiliary``
    heads, ``auxiliary_weight`` x their decoding losses, read out of the same masked
    forward pass (see the module docstring for why). A ``reconstruction_weight`` of 0
    is the ablation that asks what the self-supervised term adds to the labels.
    ``likelihood`` "poisson" scores spike counts (see the module docstring).
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood {likelihood!r}; expected one of {LIKELIHOODS}")
    names = (RECONSTRUCTION, *(h.name for h in auxiliary))

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        activity = batch["activity"]
        mask = token_span_mask(
            batch["neuron_mask"], activity.shape[1], ratio, span, frames_per_token
        )
        out = model(batch, names, mask)
        if likelihood == "poisson":
            rates = log_rates(out[RECONSTRUCTION], batch)
            reconstruction, count = masked_poisson_nll(rates, batch["counts"], mask)
        else:
            reconstruction, count = masked_mse(out[RECONSTRUCTION], activity, mask)
        loss = reconstruction_weight * reconstruction
        # Input tokens the encoder attended over: (real neuron, token of F samples) pairs
        # (the report's pretraining budget reads this column).
        n_tokens = -(-activity.shape[1] // frames_per_token)
        info = {"masked_tokens": float(count), TOKENS: float(batch["neuron_mask"].sum()) * n_tokens}
        if auxiliary:
            info["reconstruction"] = float(reconstruction.detach())
            for head in auxiliary:
                term = head.loss(out[head.name], batch)
                info[f"loss_{head.name}"] = float(term.detach())
                loss = loss + auxiliary_weight * term
        return loss, info

    return loss_fn
