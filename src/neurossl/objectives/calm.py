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
  real neurons only (padding masked), averaged over predicted tokens; plus (weight
  ``patch_weight``) the MSE of a *direct read-out* of patch t + 1's normalised frames
  from the state at t. The read-out is ``Linear(hidden) + Linear(frames of patch t)``
  with the skip initialised to persistence, so it starts as the persistence forecast
  and the backbone learns the residual. Why: a decoded code is bounded by the
  tokenizer's quantisation error and the expected decode over sampled code paths adds
  Monte-Carlo noise; on the default synthetic data both kept CalM behind a linear AR
  model at 1-2 steps ahead, which the read-out closes at no rollout cost. MSE makes the
  read-out the conditional mean, the quantity the ``expected`` forecast estimates.
- *Value input.* The backbone's token is the code embedding plus a linear embedding of
  the patch's frames (``DualAxisConfig.value_patch``; hparam ``value_input``): the codes
  stay the vocabulary the model predicts, but quantisation erases the sub-code level of
  the last context frames that short-horizon forecasting depends on.
- *Rollout without a KV cache.* Each forecast step reruns the backbone on the whole
  prefix; the horizons of the benchmark are a few patch steps, and the time attention is
  causal, so this equals cached decoding while keeping one code path.
- *Forecast modes.* ``direct`` (scored by default) emits the read-out at each step and
  feeds back the read-out as the next frames plus a code (``greedy``, or ``retokenize``
  = the tokenizer's code of the read-out; equal on the default data, so the cheaper
  greedy is the default), one deterministic path for all windows at once;
  ``greedy`` feeds back and decodes the argmax code;
  ``sample`` draws one code path from the model's distribution; ``expected`` is the
  probability-weighted decode over the code distribution, estimated as the mean of the
  decoded traces of ``samples`` sampled paths (the joint over several steps has K^H
  paths, so it is estimated, not enumerated). ``expected`` is the forecast scored under
  the method's name: it hedges where the future is uncertain instead of committing to
  one code, which lowers squared and absolute error. A mean-field variant (feeding the
  probability-weighted *embedding* back) drifts at long horizons, because the backbone
  never sees soft tokens in training; sampled paths stay on the
  training distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.models.dual_axis import DualAxisConfig, DualAxisTransformer
from neurossl.models.rate_readout import RateReadout
from neurossl.models.tokenizer import Tokenizer
from neurossl.objectives.calm_spikes import (
    hidden_poisson_loss,
    next_patch_poisson_loss,
    sample_hide,
    spike_trace_tensor,
)
from neurossl.train.engine import TrainConfig, TrainResult, train
from neurossl.train.optim import DEFAULT_BETAS
from neurossl.train.sources import FullBatches
from neurossl.train_logs import TOKENS

FORECAST_MODES = ("direct", "greedy", "expected", "sample")
#: Weight of the next-patch regression term next to the next-code cross-entropy.
PATCH_WEIGHT = 1.0
#: How the ``direct`` rollout chooses the code it feeds back for the next step.
FEEDBACKS = ("greedy", "retokenize")
#: Rank of a decoding head's per-neuron projection (see :class:`UnitReadout`).
HEAD_RANK = 4
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
class SpikeInput:
    """What a network on binned spikes needs beyond calcium's: the bin width (for the
    smoothed trace the tokenizer reads) and each unit's log mean count per bin over its
    training windows (the rate read-outs' offset, so they start at the bits/spike null)."""

    bin_size: float
    log_mean_count: np.ndarray


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
        spikes: SpikeInput | None = None,
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
            {
                h.task: UnitReadout(
                    backbone.n_units, width, len(h.classes) if h.label_key else patch
                )
                for h in heads
            }
        )
        # Direct read-out of the next patch's P normalised frames from the state at t, plus
        # a linear skip from patch t's own frames initialised to persistence (last frame
        # repeated): the backbone learns the residual over persistence from step 0 on.
        self.next_patch = nn.Linear(width, patch)
        self.patch_skip = nn.Linear(patch, patch)
        with torch.no_grad():
            self.patch_skip.weight.zero_()
            self.patch_skip.weight[:, -1] = 1.0
            self.patch_skip.bias.zero_()
        #: Prompt added to every token of the calls that name none (fine-tuning and
        #: evaluation of a prompted objective; None: no prompt, CalM's setting).
        self.prompt: int | None = None
        # Spikes only (created last, so a calcium network's initial weights are unchanged):
        # rates of the next patch from a visible token's state (the autoregressive
        # read-out) and rates of a hidden (masked-input) token's own patch (the query
        # read-out); the backbone's config has ``masked_input`` on spikes.
        self.spikes = spikes
        if spikes is not None:
            n_units = backbone.n_units
            self.next_rates = RateReadout(width, patch, mean_count=1.0, n_units=n_units)
            self.query_rates = RateReadout(width, patch, mean_count=1.0, n_units=n_units)
            log_mean = np.asarray(spikes.log_mean_count, np.float32)
            self.register_buffer("log_mean_count", torch.from_numpy(log_mean))

    def train(self, mode: bool = True) -> CalmNetwork:
        super().train(mode)
        self.tokenizer.eval()
        return self

    def normalized(self, batch: dict[str, Tensor]) -> Tensor:
        """Per-unit z-scored activity [B, T, N] (on spikes: of the smoothed trace of the
        counts); padded neurons are zero."""
        activity = batch["activity"]
        if self.spikes is not None:
            activity = spike_trace_tensor(activity, self.spikes.bin_size)
        x = self.scaler.normalize(activity, batch["unit"])
        return x * batch["neuron_mask"][:, None, :]

    @torch.no_grad()
    def codes(self, batch: dict[str, Tensor]) -> Tensor:
        return self.tokenizer.encode(self.normalized(batch))

    def patches(self, traces: Tensor, steps: int) -> Tensor:
        """Frames [B, S, N, P] of the first ``steps`` patches of traces [B, T, N]."""
        b, _, n = traces.shape
        p = self.tokenizer.patch
        return traces[:, : steps * p].reshape(b, steps, p, n).transpose(2, 3)

    def values(self, traces: Tensor, steps: int) -> Tensor | None:
        """The continuous input [B, S, N, P] of the first ``steps`` patches (None: codes only)."""
        return self.patches(traces, steps) if self.backbone.config.value_patch else None

    def read_next_patch(self, hidden: Tensor, patches: Tensor) -> Tensor:
        """Predicted normalised frames [..., N, P] of patch t + 1 from state and frames of t."""
        return (self.next_patch(hidden) + self.patch_skip(patches)).float()

    def run_backbone(
        self,
        codes: Tensor,
        traces: Tensor,
        batch: dict[str, Tensor],
        token_mask: Tensor | None = None,
        causal: bool = True,
        prompt: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Hidden states and code logits of codes [B, S, N] and their traces.

        The defaults are CalM's next-code call; a masked objective passes its input mask
        [B, S, N], its attention (``causal``) and its prompt
        (:meth:`~neurossl.models.dual_axis.DualAxisTransformer.forward`).
        """
        values = self.values(traces, codes.shape[1])
        return self.backbone(
            codes, batch["unit"], batch["session"], batch["neuron_mask"], values,
            token_mask=token_mask, causal=causal,
            prompt=self.prompt if prompt is None else prompt,
        )  # fmt: skip

    def log_rates(self, hidden: Tensor, batch: dict[str, Tensor], head: RateReadout) -> Tensor:
        """Log expected counts [B, S, N, P] of a rate head, offset by each unit's log mean."""
        unit = batch["unit"]
        rates = head(hidden, unit, batch["neuron_mask"]).float()
        return rates + self.log_mean_count[unit][:, None, :, None]

    def forward(
        self,
        batch: dict[str, Tensor],
        token_mask: Tensor | None = None,
        causal: bool = True,
        prompt: int | None = None,
    ) -> dict[str, Tensor]:
        if token_mask is not None and self.spikes is not None:
            # Masked tokens' counts are zeroed before the trace, so no visible token's
            # input (its smoothed trace, hence its code) carries a masked count.
            bins = token_mask.repeat_interleave(self.tokenizer.patch, dim=1)
            activity = batch["activity"].clone()
            activity[:, : bins.shape[1]] = activity[:, : bins.shape[1]] * ~bins
            batch = dict(batch, activity=activity)
        traces = self.normalized(batch)
        with torch.no_grad():
            codes = self.tokenizer.encode(traces)
        hidden, logits = self.run_backbone(codes, traces, batch, token_mask, causal, prompt)
        return {"codes": codes, "hidden": hidden, "logits": logits, "traces": traces}


def next_token_loss(logits: Tensor, codes: Tensor, neuron_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of logits at t for the code at t + 1 over real neurons; accuracy."""
    pred = logits[:, :-1].float()
    target = codes[:, 1:]
    mask = neuron_mask[:, None, :].expand_as(target)
    ce = F.cross_entropy(pred[mask], target[mask])
    accuracy = (pred[mask].argmax(-1) == target[mask]).float().mean()
    return ce, accuracy


def next_patch_loss(
    network: CalmNetwork, hidden: Tensor, traces: Tensor, neuron_mask: Tensor
) -> Tensor:
    """MSE of the read-out at patch step t against the normalised frames of patch t + 1."""
    b, t, n = traces.shape
    p = network.tokenizer.patch
    steps = t // p
    patches = network.patches(traces, steps)
    target = patches[:, 1:]
    pred = network.read_next_patch(hidden[:, : steps - 1], patches[:, :-1])
    mask = neuron_mask[:, None, :].expand(b, steps - 1, n)
    return F.mse_loss(pred[mask], target[mask].float())


def patch_term(
    network: CalmNetwork, out: dict[str, Tensor], batch: dict[str, Tensor]
) -> tuple[str, Tensor]:
    """The next-patch term and its log name: MSE of the direct read-out on calcium,
    Poisson NLL of the next patch's counts from :attr:`CalmNetwork.next_rates` on spikes."""
    if network.spikes is None:
        mse = next_patch_loss(network, out["hidden"], out["traces"], batch["neuron_mask"])
        return "next_patch_mse", mse
    log_rates = network.log_rates(out["hidden"], batch, network.next_rates)
    nll = next_patch_poisson_loss(log_rates, batch["activity"], batch["neuron_mask"])
    return "next_patch_poisson", nll


def make_pretrain_loss(patch_weight: float = PATCH_WEIGHT):
    """Self-supervised loss: next-code cross-entropy + ``patch_weight`` * next-patch MSE.

    The cross-entropy is CalM's objective and shapes the representation; the regression
    term trains the direct read-out that the ``direct`` forecast emits (0 disables it).
    """

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        out = model(batch)
        network = model.module if hasattr(model, "module") else model
        ce, acc = next_token_loss(out["logits"], out["codes"], batch["neuron_mask"])
        metrics = {"next_code_ce": float(ce.detach()), "next_code_acc": float(acc)}
        # One token per (real neuron, patch step): what the dual-axis backbone attends over.
        metrics[TOKENS] = float(batch["neuron_mask"].sum()) * out["codes"].shape[1]
        if patch_weight == 0:
            return ce, metrics
        name, term = patch_term(network, out, batch)
        metrics[name] = float(term.detach())
        return ce + patch_weight * term, metrics

    return loss_fn


pretrain_loss = make_pretrain_loss()


def make_query_loss(hide_ratio: float, weight: float = 1.0):
    """Spikes: Poisson NLL of hidden tokens' own counts from :attr:`CalmNetwork.query_rates`,
    with hidden tokens drawn per window by :func:`~neurossl.objectives.calm_spikes.sample_hide`.

    The read-out that answers every spiking query (co-smoothing, inter/intra-region,
    forecasting) learns here what a hidden token is, on the stage's training windows.
    """

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        network = model.module if hasattr(model, "module") else model
        steps = batch["activity"].shape[1] // network.tokenizer.patch
        hide = sample_hide(batch["neuron_mask"], steps, hide_ratio)
        out = model(batch, hide)
        log_rates = network.log_rates(out["hidden"], batch, network.query_rates)
        nll = hidden_poisson_loss(log_rates, batch["activity"], hide)
        return weight * nll, {"query_poisson": float(nll.detach())}

    return loss_fn


def add_losses(*losses):
    """One loss function: the sum of ``losses`` (each runs its own forward pass), metrics
    merged."""

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        total, metrics = None, {}
        for loss in losses:
            value, values = loss(model, batch)
            total = value if total is None else total + value
            metrics.update(values)
        return total, metrics

    return loss_fn


class _RateProbe(nn.Module):
    """A spiking network's query read-out alone, reading states a batch carries as
    ``hidden`` (with the hidden tokens ``hide``)."""

    def __init__(self, network: CalmNetwork) -> None:
        super().__init__()
        self.query_rates = network.query_rates
        self.register_buffer("log_mean_count", network.log_mean_count, persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        unit = batch["unit"]
        rates = self.query_rates(batch["hidden"], unit, batch["neuron_mask"]).float()
        return rates + self.log_mean_count[unit][:, None, :, None]


def probe_rates(
    network: CalmNetwork, batches: list[dict[str, Tensor]], steps: int, lr: float,
    weight_decay: float, hide_ratio: float, draws: int = 2,
) -> TrainResult | None:  # fmt: skip
    """Spikes: train only the query read-out, full batch, on frozen states (None: 0 steps).

    The linear-probe half of LP-FT for the rate read-out, as :func:`probe_heads` is for
    the decoding heads: its per-unit weights start at zero and the engine's learning
    rate moves them too little in a short phase (A) to leave the null model. States are
    computed once for ``draws`` hiding patterns of every batch, so a step costs only the
    read-out; it runs in the engine as :func:`probe_heads` does.
    """
    if steps < 1 or not batches:
        return None
    network.eval()
    states = []
    with torch.no_grad():
        for _ in range(draws):
            for batch in batches:
                steps_in = batch["activity"].shape[1] // network.tokenizer.patch
                hide = sample_hide(batch["neuron_mask"], steps_in, hide_ratio)
                hidden = network(batch, hide)["hidden"].float()
                states.append({**batch, "hidden": hidden, "hide": hide})
    probe = _RateProbe(network)

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        log_rates = model(batch)
        if not batch["hide"].any():  # nothing hidden: zero, still tied to the graph
            return log_rates.sum() * 0.0, {}
        return hidden_poisson_loss(log_rates, batch["activity"], batch["hide"]), {}

    settings = TrainConfig(max_steps=steps, lr=lr, weight_decay=weight_decay, warmup_steps=0,
                           lr_floor=1.0, betas=DEFAULT_BETAS, grad_clip=0.0, eval_every=steps,
                           desc="rate probe")  # fmt: skip
    device = str(states[0]["hidden"].device)
    return train(probe, loss_fn, FullBatches(states), None, settings, None, None, device)


@torch.no_grad()
def query_counts(network: CalmNetwork, batch: dict[str, Tensor], hide: Tensor) -> Tensor:
    """Expected counts [B, S*P, N] of a batch whose tokens ``hide`` [B, S, N] are hidden
    (the activity must span S whole patches); read at the hidden tokens."""
    network.eval()
    out = network(batch, hide)
    log_rates = network.log_rates(out["hidden"], batch, network.query_rates)
    b, s, n, p = log_rates.shape
    return log_rates.exp().permute(0, 1, 3, 2).reshape(b, s * p, n)


class UnitReadout(nn.Module):
    """Linear read-out of per-neuron states: a shared rank-``rank`` projection of each
    neuron's state, weighted by that *unit's* own weights and summed over real neurons.

    Why per unit: what a stimulus or a behaviour does to a population is carried by
    *which* neurons respond, with mixed signs. Averaging the states over neurons (the
    first design) cancelled it, and heads and probes on the average stayed at chance
    while a linear decoder of per-neuron activity reached 0.75-1.0 on the default
    synthetic data. Why the low rank: a session gives a few dozen labelled windows, so
    N x D weights per output (1.5 k for 48 neurons) would fit noise; N x ``rank`` do not.
    The unit weights start at zero, so an untrained head predicts the bias (chance).
    """

    def __init__(self, n_units: int, width: int, outputs: int, rank: int = HEAD_RANK) -> None:
        super().__init__()
        self.project = nn.Linear(width, rank)
        self.weight = nn.Parameter(torch.zeros(n_units, outputs, rank))
        self.bias = nn.Parameter(torch.zeros(outputs))

    def forward(self, states: Tensor, unit: Tensor, neuron_mask: Tensor) -> Tensor:
        """States [B, N, D] -> [B, O], or [B, S, N, D] -> [B, S, O]; padding ignored."""
        z = self.project(states)
        w = self.weight[unit] * neuron_mask[:, :, None, None].to(z.dtype)  # [B, N, O, r]
        if z.ndim == 4:
            return torch.einsum("bsnr,bnor->bso", z, w) + self.bias
        return torch.einsum("bnr,bnor->bo", z, w) + self.bias


def window_states(hidden: Tensor) -> Tensor:
    """Each neuron's state averaged over the window's steps, [B, S, N, D] -> [B, N, D]."""
    return hidden.mean(1)


def head_outputs(
    network: CalmNetwork, hidden: Tensor, unit: Tensor, neuron_mask: Tensor
) -> dict[str, Tensor]:
    """Logits [B, C] of window heads; behaviour [B, S*P] (normalised units) of others."""
    window = window_states(hidden)
    out = {}
    for spec in network.head_specs:
        head = network.heads[spec.task]
        if spec.label_key:
            out[spec.task] = head(window, unit, neuron_mask)
        else:
            out[spec.task] = head(hidden, unit, neuron_mask).flatten(1)
    return out


class _HeadProbe(nn.Module):
    """A network's heads alone, reading backbone states a batch carries as ``hidden``."""

    def __init__(self, network: CalmNetwork) -> None:
        super().__init__()
        self.heads, self.head_specs = network.heads, network.head_specs

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return head_outputs(self, batch["hidden"], batch["unit"], batch["neuron_mask"])  # type: ignore[arg-type]


def probe_heads(
    network: CalmNetwork, batches: list[dict[str, Tensor]], steps: int, lr: float,
    weight_decay: float,
) -> TrainResult | None:  # fmt: skip
    """Train only the heads, full batch, on the frozen backbone's states (None: 0 steps).

    The linear-probe half of LP-FT (Kumar et al. 2022): fine-tuning the backbone through
    freshly initialised heads first spends its few steps on the heads and pushes random
    gradients into pretrained features; starting the joint fine-tune from probed heads
    avoids both. The states are computed once, so a step costs only the heads. It runs
    in the engine with every batch in each step (:class:`neurossl.train.sources.FullBatches`),
    Adam's default betas, a constant LR and no clipping.
    """
    if steps < 1 or not batches:
        return None
    network.eval()
    with torch.no_grad():
        states = [{**b, "hidden": network(b)["hidden"].float()} for b in batches]
    probe = _HeadProbe(network)

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        outputs = model(batch)
        # A batch without labels adds zero, still tied to the heads' graph.
        zero = sum(o.sum() for o in outputs.values()) * 0.0
        return sum(head_losses(probe, outputs, batch).values(), zero), {}  # type: ignore[arg-type]

    settings = TrainConfig(max_steps=steps, lr=lr, weight_decay=weight_decay, warmup_steps=0,
                           lr_floor=1.0, betas=DEFAULT_BETAS, grad_clip=0.0, eval_every=steps,
                           desc="probe")  # fmt: skip
    device = str(states[0]["hidden"].device)
    return train(probe, loss_fn, FullBatches(states), None, settings, None, None, device)


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


def make_finetune_loss(next_token_weight: float, patch_weight: float = PATCH_WEIGHT):
    """Loss of the supervised fine-tune: every head plus the next-code objective.

    Keeping the next-code term (weight ``next_token_weight``) regularises the backbone
    towards the dynamics it was pretrained on while the heads pull it towards labels.
    """

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        out = model(batch)
        network = model.module if hasattr(model, "module") else model
        ce, _ = next_token_loss(out["logits"], out["codes"], batch["neuron_mask"])
        if patch_weight:
            ce = ce + patch_weight * patch_term(network, out, batch)[1]
        outputs = head_outputs(network, out["hidden"], batch["unit"], batch["neuron_mask"])
        losses = head_losses(network, outputs, batch)
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
    mode: str = "direct",
    seed: int = 0,
    samples: int = 16,
    feedback: str = "greedy",
) -> Tensor:
    """Roll out ``horizon_steps`` patch steps after the batch's activity (the context).

    Returns the forecast in dF/F (normalisation undone), [B, horizon_steps * P, N].
    ``direct`` emits the next-patch read-out at every step and feeds back a code chosen by
    ``feedback`` (``greedy``: the most likely code; ``retokenize``: the tokenizer's code
    of the read-out itself). ``expected`` averages ``samples`` sampled rollouts; sampling
    uses a generator seeded with ``seed``, so a forecast is reproducible and a shorter
    horizon is a prefix of a longer one.
    """
    if mode not in FORECAST_MODES:
        raise ValueError(f"forecast mode {mode!r}; expected one of {FORECAST_MODES}")
    if feedback not in FEEDBACKS:
        raise ValueError(f"forecast feedback {feedback!r}; expected one of {FEEDBACKS}")
    if horizon_steps < 1 or samples < 1:
        raise ValueError(f"horizon_steps and samples must be >= 1, got {horizon_steps}, {samples}")
    network.eval()
    generator = torch.Generator(device=batch["activity"].device).manual_seed(seed)
    repeats = samples if mode == "expected" else 1
    keys = ("activity", "unit", "session", "neuron_mask")
    rep = {k: batch[k].repeat_interleave(repeats, dim=0) for k in keys}
    if mode == "direct":
        traces = _direct_rollout(network, rep, horizon_steps, feedback)
    else:
        codes = _rollout(network, rep, horizon_steps, mode == "greedy", generator)
        traces = network.tokenizer.decode(codes)[:, -horizon_steps * network.tokenizer.patch :]
    future = network.scaler.denormalize(traces.float(), rep["unit"])
    return future.view(-1, repeats, *future.shape[1:]).mean(1)


def _direct_rollout(
    network: CalmNetwork, batch: dict[str, Tensor], horizon_steps: int, feedback: str
) -> Tensor:
    """Normalised read-outs of ``horizon_steps`` patches, [B, horizon_steps * P, N]."""
    tokenizer = network.tokenizer
    traces = network.normalized(batch)
    codes = tokenizer.encode(traces)
    b, n, p = codes.shape[0], codes.shape[2], tokenizer.patch
    traces = traces[:, : codes.shape[1] * p]
    patches = []
    for step in range(horizon_steps):
        hidden, logits = network.run_backbone(codes, traces, batch)
        last = traces[:, -p:].transpose(1, 2)  # [B, N, P]
        patch = network.read_next_patch(hidden[:, -1], last).transpose(1, 2)  # [B, P, N]
        patch = patch * batch["neuron_mask"][:, None, :]
        patches.append(patch)
        if step == horizon_steps - 1:
            break
        traces = torch.cat([traces, patch.to(traces.dtype)], dim=1)
        if feedback == "greedy":
            choice = logits[:, -1].argmax(-1)
        else:
            choice = tokenizer.encode(traces)[:, -1]
        codes = torch.cat([codes, choice.view(b, 1, n)], dim=1)
    return torch.cat(patches, dim=1)


def _rollout(
    network: CalmNetwork,
    batch: dict[str, Tensor],
    horizon_steps: int,
    greedy: bool,
    generator: torch.Generator,
) -> Tensor:
    """Context codes followed by ``horizon_steps`` generated codes, [B, S + H, N]."""
    tokenizer = network.tokenizer
    traces = network.normalized(batch)
    codes = tokenizer.encode(traces)
    traces = traces[:, : codes.shape[1] * tokenizer.patch]
    for step in range(horizon_steps):
        if step and network.backbone.config.value_patch:
            # The continuous input of a generated code is its decoded patch.
            traces = torch.cat([traces, tokenizer.decode(codes)[:, -tokenizer.patch :]], dim=1)
        _, logits = network.run_backbone(codes, traces, batch)
        probs = logits[:, -1].float().softmax(-1)  # [B, N, K]
        if greedy:
            choice = probs.argmax(-1)
        else:
            flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
            choice = flat.view(probs.shape[:-1])
        codes = torch.cat([codes, choice[:, None]], dim=1)
    return codes
