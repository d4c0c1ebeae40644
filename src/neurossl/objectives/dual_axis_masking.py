"""MtM's and POYO-SSL's objectives on CalM's dual-axis backbone: masks and losses.

The shared-backbone comparison (objective against backbone) trains one
network, :class:`~neurossl.objectives.calm.CalmNetwork` (frozen tokenizer, per-unit
z-scoring, dual-axis transformer over (neuron, patch) tokens), under three objectives
that differ only in which tokens are hidden, whether time attention is causal, and
which tokens are scored:

- CalM (:func:`neurossl.objectives.calm.make_pretrain_loss`): nothing hidden, causal
  time, every token scored against the *next* code.
- MtM (:func:`make_mtm_loss`): MtM's four schemes (neuron, causal, intra-region,
  inter-region), one drawn per batch, with MtM's ratios (:class:`MaskRatios`) and draw
  functions (:func:`neurossl.objectives.mtm.draw_mask`) applied on the grid of patch
  steps instead of time bins; bidirectional time attention except under the causal
  scheme, as in MtM; the scheme's learned prompt added to every token (MtM's prompt
  token; added rather than prepended, because the dual-axis grid has no sequence
  position a prompt could occupy without becoming a fake neuron or time step).
- POYO-SSL (:func:`make_poyo_loss`): POYO-SSL's contiguous spans per neuron
  (:func:`neurossl.objectives.poyo_ssl.span_mask`: ratio 0.3, spans of 6 frames rounded
  up to whole patches), bidirectional attention, and the pretraining diet: the method
  reads only the *predictable* neurons of the pretraining sessions (the split's groups,
  :func:`neurossl.objectives.poyo_ssl.diet_neuron_ids`), as POYO-SSL's Perceiver does.

Loss, in the same unit for all three so losses and budgets compare: the cross-entropy
of the code logits against the tokenizer's codes of the scored tokens, plus
``patch_weight`` x CalM's second term at the scored tokens. A masked objective scores a
token at its own position (its input was hidden), so its logits at ``t`` are read as the
code at ``t`` and CalM's patch read-out as the patch of ``t``; CalM reads both one step
ahead. The second term is CalM's for the modality (:func:`masked_patch_term`):

- calcium: the MSE of the read-out's linear map (``next_patch``) against the scored
  tokens' normalised frames. The persistence skip of CalM's read-out is left out: it
  copies the token's own frames, which a masked token does not have.
- spikes: the Poisson NLL of the scored tokens' raw counts from CalM's rate read-out
  (``next_rates``, with each unit's log mean count as offset), the term and read-out
  CalM's spiking loss uses for the next patch
  (:func:`neurossl.objectives.calm_spikes.hidden_poisson_loss` scores a patch's own
  counts). The same read-out, not the query read-out (``query_rates``) the spiking tasks
  are answered with: so all three objectives pretrain the same parameters and every
  query read-out starts untrained and is fitted by CalM's adaptation, which is the same
  for all three.

On spikes the target codes are the tokenizer's codes of the *unmasked* counts: the
network's forward zeroes hidden tokens' counts before the smoothed trace (so no visible
token's input carries a hidden count), and the codes of that trace at a hidden token
would be the code of silence, not of what was hidden.

Hidden tokens lose their code *and* their frames (the value input): one learned mask
embedding replaces both, keeping the unit and session embeddings, so the network knows
which neuron and session to fill in (POYO-SSL's mask token; MtM zeroes its inputs,
which on z-scored frames would be the mean, not "unknown", and a code has no zero).

Every loss logs the tokens its backbone attended over per step
(:data:`neurossl.train_logs.TOKENS`), one per (real neuron, patch step) as CalM does,
so the report's budget table compares them in one unit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.objectives.calm import PATCH_WEIGHT, CalmNetwork
from neurossl.objectives.calm_spikes import hidden_poisson_loss
from neurossl.objectives.mtm import (
    PROMPT_INDEX,
    SCHEMES,
    MaskRatios,
    available_schemes,
    draw_mask,
)
from neurossl.objectives.poyo_ssl import DEFAULT_MASK_RATIO, DEFAULT_MASK_SPAN, span_mask
from neurossl.train_logs import TOKENS

LossFn = Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]


def batch_schemes(schemes: Sequence[str], neuron_mask: Tensor, region: Tensor) -> list[str]:
    """The schemes every window of a (possibly mixed-session) batch supports."""
    allowed = list(schemes)
    for row in range(neuron_mask.shape[0]):
        n = int(neuron_mask[row].sum())
        ok = set(available_schemes(schemes, region[row, :n].cpu()))
        allowed = [s for s in allowed if s in ok]
    return allowed


def mtm_token_mask(
    scheme: str, neuron_mask: Tensor, region: Tensor, steps: int, ratios: MaskRatios
) -> tuple[Tensor, Tensor, bool]:
    """MtM's ``scheme`` on a grid of ``steps`` patch steps: (hidden, target) bool
    [B, steps, N] and whether time attention is causal.

    Each window draws its own mask from its own real neurons' regions (a batch may mix
    sessions; MtM draws per single-session batch), padding is neither hidden nor scored.
    """
    b, n_max = neuron_mask.shape
    hidden = torch.zeros(b, steps, n_max, dtype=torch.bool)
    target = torch.zeros_like(hidden)
    causal = False
    for row in range(b):
        n = int(neuron_mask[row].sum())
        mask = draw_mask(scheme, 1, steps, region[row, :n].cpu(), ratios)
        hidden[row, :, :n], target[row, :, :n] = mask.hidden[0], mask.target[0]
        causal = mask.causal
    device = neuron_mask.device
    return hidden.to(device), target.to(device), causal


def poyo_token_mask(neuron_mask: Tensor, steps: int, patch: int, ratio: float, span: int) -> Tensor:
    """POYO-SSL's span mask on (neuron, patch) tokens, bool [B, steps, N]; ``span`` in
    frames, rounded up to whole patches (a hidden token hides all its frames)."""
    return span_mask(neuron_mask, steps, ratio, -(-span // patch))


def masked_code_loss(logits: Tensor, codes: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the logits at each scored token against its own code; accuracy.

    Zero (with a gradient path) when nothing is scored, so a rare empty draw is no NaN.
    """
    if not target.any():
        return logits.float().sum() * 0.0, torch.zeros(())
    pred = logits.float()[target]
    return F.cross_entropy(pred, codes[target]), (pred.argmax(-1) == codes[target]).float().mean()


def masked_patch_loss(
    network: CalmNetwork, hidden: Tensor, traces: Tensor, target: Tensor
) -> Tensor:
    """MSE of the patch read-out at each scored token against its own normalised frames."""
    if not target.any():
        return hidden.float().sum() * 0.0
    patches = network.patches(traces, target.shape[1])
    pred = network.next_patch(hidden).float()
    return F.mse_loss(pred[target], patches[target].float())


def masked_patch_term(
    network: CalmNetwork, out: dict[str, Tensor], batch: dict[str, Tensor], target: Tensor
) -> tuple[str, Tensor]:
    """CalM's patch term of the modality at the scored tokens' own patches, and its log
    name: the frames' MSE on calcium, the counts' Poisson NLL from CalM's rate read-out
    (``next_rates``) on spikes. Zero (with a gradient path) when nothing is scored."""
    if network.spikes is None:
        return "masked_patch_mse", masked_patch_loss(network, out["hidden"], out["traces"], target)
    if not target.any():
        return "masked_patch_poisson", out["hidden"].float().sum() * 0.0
    log_rates = network.log_rates(out["hidden"], batch, network.next_rates)
    return "masked_patch_poisson", hidden_poisson_loss(log_rates, batch["activity"], target)


def target_codes(network: CalmNetwork, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """The codes a scored token is trained to predict: the input's on calcium, those of
    the unmasked counts on spikes (the forward's codes there are of the masked counts)."""
    return out["codes"] if network.spikes is None else network.codes(batch)


def _unwrap(model: nn.Module) -> CalmNetwork:
    return model.module if hasattr(model, "module") else model  # type: ignore[return-value]


def _masked_step(
    model: nn.Module,
    batch: dict[str, Tensor],
    hidden: Tensor,
    target: Tensor,
    causal: bool,
    prompt: int | None,
    patch_weight: float,
) -> tuple[Tensor, dict[str, float]]:
    out = model(batch, token_mask=hidden, causal=causal, prompt=prompt)
    network = _unwrap(model)
    ce, acc = masked_code_loss(out["logits"], target_codes(network, out, batch), target)
    metrics = {
        "masked_code_ce": float(ce.detach()),
        "masked_code_acc": float(acc),
        "target_fraction": float(target.float().mean()),
        TOKENS: float(batch["neuron_mask"].sum()) * out["codes"].shape[1],
    }
    if patch_weight == 0:
        return ce, metrics
    name, term = masked_patch_term(network, out, batch, target)
    metrics[name] = float(term.detach())
    return ce + patch_weight * term, metrics


def steps_of(network: CalmNetwork, batch: dict[str, Tensor]) -> int:
    """Patch steps of a batch's windows (the tokenizer drops a trailing partial patch)."""
    return batch["activity"].shape[1] // network.tokenizer.patch


def make_mtm_loss(
    schemes: Sequence[str] = SCHEMES,
    ratios: MaskRatios | None = None,
    prompts: bool = True,
    patch_weight: float = PATCH_WEIGHT,
) -> LossFn:
    """MtM on the dual-axis backbone: one scheme per batch among those every window
    supports (region schemes need region labels), its mask, attention and prompt."""
    ratios = ratios or MaskRatios()
    for scheme in schemes:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown MtM scheme {scheme!r}; expected one of {SCHEMES}")

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        allowed = batch_schemes(schemes, batch["neuron_mask"], batch["region"])
        if not allowed:
            raise ValueError(f"no window of this batch supports a scheme of {tuple(schemes)}")
        scheme = allowed[int(torch.randint(len(allowed), (1,)))]
        steps = steps_of(_unwrap(model), batch)
        hidden, target, causal = mtm_token_mask(
            scheme, batch["neuron_mask"], batch["region"], steps, ratios
        )
        prompt = PROMPT_INDEX[scheme] if prompts else None
        loss, metrics = _masked_step(model, batch, hidden, target, causal, prompt, patch_weight)
        metrics["scheme"] = float(SCHEMES.index(scheme))
        return loss, metrics

    return loss_fn


def make_poyo_loss(
    ratio: float = DEFAULT_MASK_RATIO,
    span: int = DEFAULT_MASK_SPAN,
    patch_weight: float = PATCH_WEIGHT,
) -> LossFn:
    """POYO-SSL on the dual-axis backbone: span-masked tokens, bidirectional attention.

    The diet is the data, not the loss: the caller's loader reads only the predictable
    neurons.
    """

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        network = _unwrap(model)
        steps = steps_of(network, batch)
        hidden = poyo_token_mask(batch["neuron_mask"], steps, network.tokenizer.patch, ratio, span)
        return _masked_step(model, batch, hidden, hidden, False, None, patch_weight)

    return loss_fn
