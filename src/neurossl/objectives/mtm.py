"""Multi-task masking (MtM) and the NDT temporal-masking baseline: masks and loss.

A mask has two parts: ``hidden`` (entries zeroed in the model's input) and ``target``
(entries the Poisson NLL is counted on). For most schemes they are the same; for
intra-region they differ, following the IBL MtM reference masker (``intra-region``:
"all neurons except a specific brain region are masked; some neurons are masked in the
target region; the targets are within the unmasked region"):

- ``neuron``: each neuron hidden with p = 0.3 at all bins; targets = hidden.
- ``causal``: the last 60 % of bins hidden for all neurons, with causal attention so a
  bin's prediction uses only earlier bins; targets = hidden.
- ``intra_region``: one region with >= 2 neurons is drawn; *every other region is
  hidden* (not scored) and a random half of the region's neurons are hidden and scored,
  so the model learns to predict a region from itself alone. Half (not the masker's
  generic ratio) because that is exactly the evaluation query of
  :func:`neurossl.eval.queries.spiking_queries`, so training and test ask the same.
- ``inter_region``: all neurons of one region (drawn among >= 2 present) hidden and
  scored; the other regions are observed.
- ``temporal`` (NDT baseline): random 30 % of bins hidden for all neurons.

Per batch ONE scheme is drawn uniformly among those the session supports (region
schemes need region labels with >= 2 regions / a region with >= 2 neurons); MtM tells
the model which one through a learned prompt token (index :data:`PROMPT_INDEX`).
Masked inputs are zeroed (the reference's ``zero_ratio: 1``). Random draws use the
global torch RNG on CPU, which the engine checkpoints, so masks are reproducible and
device-independent.

On calcium (dF/F) the masks, schemes and prompts are the same; two things change, both
declared here (:data:`RECONSTRUCTION`, :class:`UnitStandardizer`):

- The loss is the mean squared error on the masked entries of per-neuron z-scored
  dF/F, i.e. the Gaussian NLL with unit variance: the continuous counterpart of the
  Poisson NLL, one predicted quantity (the mean) per entry, and exactly what the
  calcium metrics (MAE/MSE/R^2 per horizon step, ZAPBench) score. A learned variance
  head (full Gaussian NLL) was not taken: it lets the model down-weight the entries it
  finds hard, which trades mean accuracy for calibration nobody scores here.
- Inputs and targets are z-scored per neuron with the stage's training-window moments
  (:func:`neurossl.data.unit_stats.unit_moments`, the normalisation POYO and CalM use),
  so zeroing a masked entry fills it with the neuron's mean, the same neutral "no
  information" value zero is for sparse spike counts, and ROIs of different brightness
  weigh equally in the loss.

Forecasting is read out from a masked model in one way, :func:`forecast_readout`: the
causal scheme's prompt and causal attention, the end of the context followed by
``horizon`` zeroed (masked) bins placed where the causal training mask begins, and the
predictions at those bins in one pass (MtM's forward prediction; no rollout). The NDT
baseline, which has no prompt, answers the same input with bidirectional attention, as
it does every task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.data.loader import WindowDataset
from neurossl.data.unit_stats import unit_moments
from neurossl.train_logs import TOKENS

SCHEMES = ("neuron", "causal", "intra_region", "inter_region")
TEMPORAL = "temporal"
PROMPT_INDEX = {scheme: i for i, scheme in enumerate(SCHEMES)}
#: Evaluation task -> the scheme (and prompt) whose mask matches its query.
TASK_SCHEME = {
    "co_smoothing": "neuron",
    "forecasting": "causal",
    "intra_region": "intra_region",
    "inter_region": "inter_region",
}

#: Masked-reconstruction loss per modality (see the module docstring).
RECONSTRUCTION = {"spikes": "poisson", "calcium": "mse"}


@dataclass(frozen=True)
class MaskRatios:
    neuron: float = 0.3
    causal: float = 0.6
    temporal: float = 0.3
    intra: float = 0.5

    def __post_init__(self) -> None:
        for name in ("neuron", "causal", "temporal", "intra"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"mask ratio {name!r} must be in (0, 1), got {value}")


@dataclass(frozen=True)
class Mask:
    scheme: str
    hidden: Tensor  # bool [B, T, N]: zeroed in the input
    target: Tensor  # bool [B, T, N]: counted in the loss
    causal: bool


def neuron_mask(b: int, t: int, n: int, ratio: float) -> Mask:
    hidden = _at_least_one(torch.rand(b, n) < ratio)
    full = hidden[:, None, :].expand(b, t, n)
    return Mask("neuron", full, full, causal=False)


def causal_start(t: int, fraction: float) -> int:
    """First bin the causal scheme hides in a window of ``t`` bins."""
    return t - max(1, math.ceil(round(fraction * t, 6)))


def causal_mask(b: int, t: int, n: int, fraction: float) -> Mask:
    first = causal_start(t, fraction)
    bins = torch.arange(t) >= first
    full = bins[None, :, None].expand(b, t, n)
    return Mask("causal", full, full, causal=True)


def temporal_mask(b: int, t: int, n: int, ratio: float) -> Mask:
    hidden = _at_least_one(torch.rand(b, t) < ratio)
    full = hidden[:, :, None].expand(b, t, n)
    return Mask(TEMPORAL, full, full, causal=False)


def inter_region_mask(b: int, t: int, regions: Tensor) -> Mask:
    """Hide and score all neurons of one random region; needs >= 2 regions."""
    present = torch.unique(regions)
    if present.numel() < 2:
        raise ValueError("inter_region masking needs neurons of >= 2 regions")
    region = present[torch.randint(present.numel(), (1,))].item()
    neurons = regions == region
    full = neurons[None, None, :].expand(b, t, regions.numel())
    return Mask("inter_region", full, full, causal=False)


def intra_region_mask(b: int, t: int, regions: Tensor, ratio: float) -> Mask:
    """Observe one region only; hide and score a random ``ratio`` of its neurons."""
    present, counts = torch.unique(regions, return_counts=True)
    eligible = present[counts >= 2]
    if eligible.numel() == 0:
        raise ValueError("intra_region masking needs a region with >= 2 neurons")
    region = eligible[torch.randint(eligible.numel(), (1,))].item()
    members = torch.nonzero(regions == region).squeeze(1)
    k = min(members.numel() - 1, max(1, round(ratio * members.numel())))
    order = torch.argsort(torch.rand(b, members.numel()), dim=1)
    scored = torch.zeros(b, regions.numel(), dtype=torch.bool)
    scored.scatter_(1, members[order[:, :k]], True)
    outside = (regions != region)[None, :].expand(b, -1)
    hidden = (scored | outside)[:, None, :].expand(b, t, regions.numel())
    target = scored[:, None, :].expand(b, t, regions.numel())
    return Mask("intra_region", hidden, target, causal=False)


def available_schemes(schemes: Sequence[str], regions: Tensor) -> list[str]:
    """The schemes a session's region labels allow, in the given order."""
    _, counts = torch.unique(regions, return_counts=True)
    allowed = []
    for scheme in schemes:
        if scheme == "inter_region" and counts.numel() < 2:
            continue
        if scheme == "intra_region" and not (counts >= 2).any():
            continue
        allowed.append(scheme)
    return allowed


def draw_mask(scheme: str, b: int, t: int, regions: Tensor, ratios: MaskRatios) -> Mask:
    n = regions.numel()
    if scheme == "neuron":
        return neuron_mask(b, t, n, ratios.neuron)
    if scheme == "causal":
        return causal_mask(b, t, n, ratios.causal)
    if scheme == TEMPORAL:
        return temporal_mask(b, t, n, ratios.temporal)
    if scheme == "inter_region":
        return inter_region_mask(b, t, regions)
    if scheme == "intra_region":
        return intra_region_mask(b, t, regions, ratios.intra)
    raise ValueError(f"unknown masking scheme {scheme!r}; expected {(*SCHEMES, TEMPORAL)}")


def masked_poisson_nll(log_rates: Tensor, counts: Tensor, target: Tensor) -> Tensor:
    """Mean Poisson NLL (up to the log k! constant) over ``target`` entries only."""
    if not target.any():
        raise ValueError("mask selects no entry to score")
    nll = F.poisson_nll_loss(log_rates.float(), counts.float(), log_input=True, reduction="none")
    return nll[target].mean()


def masked_mse(pred: Tensor, values: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over ``target`` entries only (z-scored dF/F)."""
    if not target.any():
        raise ValueError("mask selects no entry to score")
    return F.mse_loss(pred.float()[target], values.float()[target])


def reconstruction_loss(kind: str, output: Tensor, values: Tensor, target: Tensor) -> Tensor:
    """The masked loss named by :data:`RECONSTRUCTION` (model output: log-rates or values)."""
    if kind == "poisson":
        return masked_poisson_nll(output, values, target)
    if kind == "mse":
        return masked_mse(output, values, target)
    raise ValueError(
        f"unknown reconstruction {kind!r}; expected {sorted(set(RECONSTRUCTION.values()))}"
    )


class UnitStandardizer:
    """Per-session, per-neuron z-scoring of calcium traces (moments of training windows).

    Stored in the model file (:meth:`to_json`) so evaluation scales a session exactly as
    training did, and predictions are mapped back to dF/F (:meth:`invert`) before they
    are scored against the raw traces, like every other calcium method's.
    """

    def __init__(self, moments: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.moments = {
            s: (np.asarray(m, dtype=np.float32), np.asarray(d, dtype=np.float32))
            for s, (m, d) in moments.items()
        }

    @classmethod
    def fit(cls, data: WindowDataset) -> UnitStandardizer:
        """Moments of each session's neurons (in column order) over ``data``'s windows."""
        moments = {}
        for session, indices in data.indices_by_session().items():
            if indices.size == 0:
                continue
            rows = data[int(indices[0])]["unit"]
            moments[session] = unit_moments(data, [data.vocab.unit_ids[int(r)] for r in rows])
        return cls(moments)

    def _of(self, session: str) -> tuple[np.ndarray, np.ndarray]:
        if session not in self.moments:
            raise KeyError(f"no calcium normalisation for session {session!r}")
        return self.moments[session]

    def __call__(self, session: str, x: Tensor) -> Tensor:
        mean, std = (torch.as_tensor(v, device=x.device) for v in self._of(session))
        return (x - mean) / std

    def apply(self, session: str, x: np.ndarray) -> np.ndarray:
        mean, std = self._of(session)
        return ((x - mean) / std).astype(np.float32)

    def invert(self, session: str, z: np.ndarray) -> np.ndarray:
        mean, std = self._of(session)
        return z * std + mean

    def update(self, other: UnitStandardizer) -> None:
        self.moments.update(other.moments)

    def to_json(self) -> dict[str, list[list[float]]]:
        return {s: [m.tolist(), d.tolist()] for s, (m, d) in self.moments.items()}

    @classmethod
    def from_json(cls, saved: dict[str, list[list[float]]]) -> UnitStandardizer:
        return cls({s: (np.asarray(m), np.asarray(d)) for s, (m, d) in saved.items()})


def forecast_readout(
    predict: Callable[[np.ndarray, int | None, bool], np.ndarray],
    past: np.ndarray,
    horizon: int,
    start: int,
    prompt: int | None,
    causal: bool,
) -> np.ndarray:
    """The family's one forecasting read-out: the last ``start`` bins of ``past``
    [W, C, N] (model scale) followed by ``horizon`` zeroed bins, answered in one pass;
    returns the outputs at those bins [W, horizon, N]. ``predict(x, prompt, causal)``
    is the model's output on ``x``.

    ``start`` is where the causal scheme's mask begins in a training window
    (:func:`causal_start`), so the masked bins sit at the positions the model learned
    to fill from the bins before them: the query is the training mask, as MtM asks of
    every task. Context bins beyond ``start`` would sit at positions the causal scheme
    always hides, inputs the model never saw observed. MtM passes the causal prompt
    with causal attention, so a bin's prediction uses only earlier bins."""
    w, c, n = past.shape
    if not 1 <= start <= c:
        raise ValueError(f"forecast read-out needs 1 <= start <= context ({c}), got {start}")
    x = np.concatenate([past[:, c - start :], np.zeros((w, horizon, n), past.dtype)], axis=1)
    return predict(x, prompt, causal)[:, start:]


def _at_least_one(hidden: Tensor) -> Tensor:
    """Rows with nothing hidden get one random entry, so every window has a target."""
    empty = ~hidden.any(dim=1)
    if empty.any():
        pick = torch.randint(hidden.shape[1], (int(empty.sum()),))
        hidden = hidden.clone()
        hidden[torch.nonzero(empty).squeeze(1), pick] = True
    return hidden


class MaskedModelingLoss:
    """``loss_fn(model, batch)`` for the engine: draw one scheme, mask, score the masked.

    ``session_ids`` maps the batch's ``session`` index to the model's stitcher name;
    batches must hold one session (``make_loader(by_session=True)``). ``modality`` picks
    the loss (:data:`RECONSTRUCTION`); calcium batches are z-scored by ``standardize``.
    """

    def __init__(
        self,
        schemes: Sequence[str],
        ratios: MaskRatios,
        prompts: bool,
        session_ids: Sequence[str],
        modality: str = "spikes",
        standardize: UnitStandardizer | None = None,
    ) -> None:
        if modality not in RECONSTRUCTION:
            raise ValueError(f"unknown modality {modality!r}; expected {tuple(RECONSTRUCTION)}")
        if modality == "calcium" and standardize is None:
            raise ValueError("calcium masked modelling needs a UnitStandardizer")
        self.reconstruction = RECONSTRUCTION[modality]
        self.standardize = standardize if modality == "calcium" else None
        if not schemes:
            raise ValueError("MaskedModelingLoss needs at least one scheme")
        for scheme in schemes:
            if scheme not in (*SCHEMES, TEMPORAL):
                raise ValueError(f"unknown masking scheme {scheme!r}")
        if prompts and TEMPORAL in schemes:
            raise ValueError("the temporal (NDT) scheme has no prompt token")
        self.schemes, self.ratios, self.prompts = tuple(schemes), ratios, prompts
        self.session_ids = tuple(session_ids)
        self.all_schemes = (*SCHEMES, TEMPORAL)

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        session, counts, regions = single_session(batch, self.session_ids)
        if self.standardize is not None:
            counts = self.standardize(session, counts)
        b, t, _ = counts.shape
        allowed = available_schemes(self.schemes, regions)
        if not allowed:
            raise ValueError(f"session {session!r} supports none of the schemes {self.schemes}")
        scheme = allowed[int(torch.randint(len(allowed), (1,)))]
        mask = draw_mask(scheme, b, t, regions, self.ratios)
        hidden, target = mask.hidden.to(counts.device), mask.target.to(counts.device)
        prompt = PROMPT_INDEX[scheme] if self.prompts else None
        output = model(counts.masked_fill(hidden, 0.0), session, prompt, mask.causal)
        loss = reconstruction_loss(self.reconstruction, output, counts, target)
        return loss, {
            "scheme": float(self.all_schemes.index(scheme)),
            "target_fraction": float(target.float().mean()),
            TOKENS: float(b * t),  # one token per time bin (the report's budget table)
        }


def single_session(
    batch: dict[str, Tensor], session_ids: Sequence[str]
) -> tuple[str, Tensor, Tensor]:
    """(session id, counts [B, T, N], regions [N] on CPU) of a one-session batch."""
    sessions = batch["session"]
    if (sessions != sessions[0]).any():
        raise ValueError("NDT/MtM batches must hold one session; use make_loader(by_session=True)")
    n = int(batch["neuron_mask"][0].sum())
    regions = batch["region"][0, :n].cpu()
    return session_ids[int(sessions[0])], batch["activity"][:, :, :n], regions
