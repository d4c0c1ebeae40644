"""The Perceiver family: POYO-SSL, its two data-diet ablations, and the scratch model.

- ``poyo_ssl``: masked-reconstruction pretraining (:mod:`neurossl.objectives.poyo_ssl`)
  on the *predictable* neurons of the pretraining sessions.
- ``poyo_ssl_mixed``: the same on all neurons; ``poyo_ssl_reverse``: on the
  unpredictable neurons only.
- ``scratch_perceiver``: no pretraining; the same fine-tuning from random weights.

Every method fine-tunes and is scored on the same population: the *unpredictable*
neurons of the held-out sessions (new animals; on spikes all of their units, see
below), so the four differ only in what pretraining saw. Fine-tuning runs three
phases, each a call of the shared engine with its own checkpoints (a killed job
resumes inside the phase it was in):

1. ``unit_id``: unit identification. New unit rows (the held-out neurons) and session
   rows are appended to the embedding tables and trained alone, through the frozen
   pretrained model; every other weight, and every old embedding row, stays
   bit-identical. ``unit_id_loss`` says what they are fitted to: masked reconstruction
   of the new neurons (default), or the decoding losses through the pretrained task
   heads (``"task"``, POYO+'s unit identification; the heads exist when pretraining ran
   with ``aux_weight`` > 0 on the same tasks and classes, see below). Embedding rows
   start at unit scale, so they need a far larger step than the network weights to move
   in a short phase: ``unit_id_lr`` (at 3e-3 for 100 steps a frozen pretrained
   model decodes new animals' predictable ROIs at chance, at 0.03 for 300 steps at 0.96;
   docs/hparam_selection.md).
2. ``heads``: task embeddings and heads, the readout (decoder cross-attention) and the
   last ``unfreeze_layers`` latent layers train on the decoding losses, with the new
   embeddings.
3. ``full``: everything trains at ``lr * full_lr_scale``.

Decoding losses are summed over the configured tasks (cross-entropy for window labels,
MSE on train-standardised behaviour per bin; see :mod:`neurossl.methods.task_heads`).

``aux_weight`` > 0 adds the published POYO-CAP recipe's lightweight auxiliary term to
pretraining: the decoding losses of the configured tasks on the pretraining sessions'
*train* windows (their labels; held-out sessions are never read), times the weight
(the paper: 0.01 x drifting-grating cross-entropy). Why it exists: pure masked
reconstruction of the default data's dense cells leaves the stimulus out of the latents
(a linear probe of them reads it no better than of a random encoder's;
docs/hparam_selection.md), and the published pretraining is not purely
self-supervised either. The heads it trains are saved with the model, and fine-tuning
keeps a head whose task, kind and class count match (:meth:`Perceiver.set_task`).

hparams (``config: hparams.<method>``). Defaults are sized for the default synthetic
dataset on one CPU core (measured on a loaded 2-core machine at size ``tiny``: 6-10 s
pretraining on predictable neurons, 4 s on unpredictable ones, 6-7 s fine-tuning, 0.2 s
evaluation; 30 calcium forecasting read-out steps add ~1.7 s); real benchmarks
should raise the step counts on a GPU. The protocol run
(``config/protocol.yaml``) overrides the fine-tuning schedule per method with the
variant each method scored best with on validation windows of unreported seeds
(:mod:`neurossl.selection`; table in ``docs/hparam_selection.md``): 250 or 400 full
steps, some after a 60-step readout phase; the 150 full steps here were never chosen
(the one-seed demo uses them to stay short). It also pretrains the three diets for 1000
steps with ``aux_weight`` 0.1: on the default generator's ROIs, shorter pretraining
gained nothing over scratch on validation windows (docs/hparam_selection.md, "A
generator with room above scratch").
``config/poyo_ssl_large_corpus.yaml`` records the pretraining animals for 700 trials
and sets the recipe chosen for that corpus: ``aux_weight`` 1.0 for every diet and
POYO+'s unit identification (``unit_id_loss: "task"``, 300 steps at ``unit_id_lr``
0.1, then 150 full steps at 0.33 x ``lr``). Why: on the default's 280 labelled
pretraining windows the auxiliary term memorises its labels and the encoder holds no
stimulus to transfer (docs/hparam_selection.md, "A pretraining corpus larger than the
fine-tuning set").
``eval_every`` larger than every phase means each phase is validated only at its end,
i.e. the *last* weights are kept: the default dataset has 10 validation windows per
held-out session, too few to rank checkpoints of one cosine schedule without selecting
noise. Raise ``eval_every`` / ``patience`` use on real data with hundreds of validation
windows.

Inputs are z-scored per neuron with statistics of the train windows of the stage
(``unit_norm`` in the model file, see :class:`RowMaps`).

On binned spike counts (the Session files' modality picks the path; the calcium path
is unchanged). Each choice made to fit the objective to spikes, and why:

- Tokens: the same (unit, ``frames_per_token`` bins) tokens of z-scored counts. POYO
  itself tokenises each spike as an event (unit embedding at the spike time); the
  Session contract holds binned counts, and the other spiking methods read the same
  bins, so the comparison is on one input.
- Loss: Poisson NLL of the masked bins' counts from a predicted log-rate (MtM/NDT's
  likelihood for spiking entries) instead of the squared error on z-scored dF/F, with
  each unit's log mean count as the rate offset (see
  :mod:`neurossl.objectives.poyo_ssl`); the reconstruction head of a new spiking model
  starts at zero, so training starts from the mean-rate model.
- Diets: the split step scores skewness and excess kurtosis of every unit's binned
  counts on the training windows, as of every ROI's dF/F, with knee-chosen thresholds
  per modality (the paper's 3.51 / 22.62 are Allen dF/F values, not count values).
  ``poyo_ssl`` pretrains on the predictable units, ``poyo_ssl_mixed`` on all and
  ``poyo_ssl_reverse`` on the unpredictable ones, as on calcium.
- Fine-tuning population: every unit of the held-out sessions (``finetune_neurons``
  defaults to ``all`` on spikes). The spiking tasks are defined on the whole
  population (co-smoothing's held-in/held-out split, regions) and every other spiking
  method is scored on it; a subset would make the rows incomparable (an error says so).
  The diet, where POYO-SSL's claim lives, is the pretraining one.
- Query tasks (co-smoothing, forecasting, inter-/intra-region) are answered by the
  reconstruction readout: the query's hidden entries go behind the mask token and the
  readout's rates there are scored by :func:`neurossl.eval.scoring.score_queries`, the
  path every spiking method uses. Co-smoothing queries the held-out units' own
  embeddings, which unit identification fits on the train windows (where every unit
  is visible, NLB's convention): POYO's query-based readout gives a rate for any unit
  it has an embedding for, so no extra head is needed, and the same weights answer
  every spiking task. Why not a linear map from held-in latents (NLB's usual
  read-out): it would be fitted on the test session's held-out units per task, a
  different adaptation from the other methods' and outside the model.
- Fine-tuning loss with query tasks: Poisson reconstruction plus the decoding losses
  in phases 2 and 3 (only the reconstruction when no decoding task is configured),
  so the readout the query tasks are scored on adapts to the new animals as MtM's
  does under its own objective.
- Budgets: the ``spikes`` hparam key overrides any other key on spiking recordings
  (the default config cuts the spiking runs to a smoke budget there).

Calcium forecasting, the one adaptation, the same for all four methods of the family
(POYO has no forecasting read-out; every other calcium method and baseline forecasts
every ROI of a held-out session from its context frames):

- Fine-tuning phases 1-3 are untouched: the decoding heads and rows are the same with
  or without forecasting configured, so POYO-SSL's decoding claim is measured under
  the setup it was made in.
- After them, a separate read-out phase (``forecast``, ``forecast_steps`` steps at
  phase 1's rate, ``unit_id_lr`` or ``lr``, through the engine) trains on a *copy* of
  the fine-tuned model with the trunk frozen: value/unit/session embeddings of the
  fine-tuned rows, the encoder and every latent layer stay as fine-tuning left them.
  Trained: new unit rows for every held-out ROI that has none yet (by default the
  predictable ROIs, which fine-tuning never saw), so forecasting is scored on every
  ROI as the baselines score it; and the reconstruction read-out's query path, the
  parts between the latents and one unit's values: the reconstruction task embedding
  and head, the decoder cross-attention and its output norm (the decoder is shared with
  the decoding heads, hence the copy). Why a frozen trunk: what the objective put in
  the representation is what is measured, as CalM's frozen probes measure it; a
  trunk trained on forecasting would be a forecasting objective.
- Masks are forecast-shaped, on the held-out sessions' train windows and in the
  evaluation alike: a window's first ``context`` frames seen, the next ``horizon``
  frames hidden behind the mask token and scored (``hparams.<method>.context`` /
  ``horizon``, default 32 / 16 as MtM, CalM and the baselines). The oldest ``context
  mod frames_per_token`` frames are dropped so the last context frame ends a token (a
  token straddling the boundary would be hidden and take the freshest frames with it);
  the horizon frames are zeroed before tokenisation, so no horizon value reaches any
  token. Loss: squared error on train-standardised dF/F at the hidden frames.
- Scoring: the read-out's outputs are mapped back to dF/F with each unit's train-window
  mean and std and scored per horizon step by
  :func:`neurossl.eval.metrics.horizon_metrics` against
  :func:`neurossl.eval.queries.forecast_windows`'s targets, the baselines' windows.
- The read-out is saved in the fine-tuned model file under ``forecaster`` (its unit
  keys, their standardisation and the trained parameters), beside the fine-tuned state.

hparams: :class:`~neurossl.methods.hparam_models.PoyoHParams` (every key, default and
bound is listed in ``docs/hparams.md``; ``neuron_diet`` defaults by method).

The size preset is the ``size`` wildcard (:data:`neurossl.models.perceiver.PRESETS`).
Model files hold the rebuild spec, weights, the unit/session keys of every embedding
row, the fitted task heads and ``n_parameters`` (backbone, as
:func:`~neurossl.models.perceiver.count_parameters`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from neurossl import catalog
from neurossl.contract import Evaluation, StageInputs, StageOutputs, session_modality
from neurossl.data.loader import Batch, DatasetVocab, WindowDataset, WindowLoader, make_loader
from neurossl.data.session import read_neurons
from neurossl.data.unit_stats import unit_moments
from neurossl.device import autocast, resolve_device
from neurossl.eval.metrics import horizon_metrics
from neurossl.eval.queries import SPIKING_QUERY_TASKS, forecast_windows, spiking_queries
from neurossl.eval.rows import make_rows
from neurossl.eval.scoring import score_queries
from neurossl.hparams import check, finetune_only_keys
from neurossl.methods.hparam_models import PoyoHParams
from neurossl.methods.task_heads import TaskHead, fit_task_heads, score_heads, task_loss_fn
from neurossl.models.perceiver import (
    CLASSIFICATION,
    RECONSTRUCTION,
    Perceiver,
    PerceiverConfig,
    backbone_parameters,
    make_config,
)
from neurossl.names import is_decoding_task
from neurossl.objectives.poyo_ssl import (
    diet_neuron_ids,
    log_rates,
    masked_mse,
    reconstruction_loss_fn,
)
from neurossl.train.engine import TrainConfig, train
from neurossl.train.model_file import load_model_file, save_model_file
from neurossl.train.runtime import seed_everything
from neurossl.train_logs import publish

#: The family serves both modalities; a stage's Session files say which it is on.
MODALITY = "any"
_LIKELIHOOD = {"calcium": "gaussian", "spikes": "poisson"}
#: Smallest mean count per bin whose log seeds a unit's rate (a silent training trace).
_RATE_FLOOR = 1e-3
#: The calcium task answered by the forecasting read-out (see the module docstring).
FORECASTING = "forecasting"
#: What the forecasting read-out phase trains besides the new unit rows: the
#: reconstruction query path (the trunk stays frozen; see the module docstring).
_FORECAST_READOUT = (
    f"task_embed.{RECONSTRUCTION}",
    f"heads.{RECONSTRUCTION}.",
    "decoder.",
    "out_norm.",
)
_DIET_OF = {"poyo_ssl": "predictable", "poyo_ssl_mixed": "all", "poyo_ssl_reverse": "unpredictable"}
_FAMILY = (*_DIET_OF, "scratch_perceiver")
#: What unit identification fits the new embeddings to: the decoding losses through the
#: pretrained heads (POYO+'s choice) or masked reconstruction of the new neurons.
UNIT_ID_LOSSES = ("task", "reconstruction")
LossFn = Callable[[nn.Module, Batch], tuple[Tensor, dict[str, float]]]


def read_hparams(method: str, values: dict[str, Any], modality: str = "calcium") -> PoyoHParams:
    """The stage's hparams checked by :class:`PoyoHParams`; the diet defaults by method.

    The ``spikes`` key holds overrides of the other keys that apply on spiking
    recordings only (one method name serves both modalities, and their windows differ
    several-fold in tokens). On spikes fine-tuning defaults to every neuron of the
    held-out sessions: the spiking tasks (co-smoothing's held-in/held-out split,
    regions) are defined on the whole population, and every other spiking method is
    scored on it.
    """
    defaults: dict[str, Any] = {"neuron_diet": _DIET_OF.get(method, "predictable")}
    values = dict(values)
    overrides = values.pop("spikes", None) or {}
    if modality == "spikes":
        defaults["finetune_neurons"] = "all"
        values |= overrides
    return check(method, PoyoHParams, defaults | values)


class RowMaps:
    """Dataset vocabulary ids -> rows of the model's unit and session tables, plus z-scoring.

    The model's tables hold only the units it was trained on, in the order they were
    added; the keys (``session/neuron_id``, session id) are saved with the weights, so
    the same row means the same neuron in every later stage.

    ``unit_norm`` ([mean, std] per unit key, fitted on train windows by
    :func:`unit_statistics` and saved with the weights) standardises each neuron's dF/F
    or counts; on spikes the raw counts (``counts``) and the log of each unit's mean
    count (``log_mean``, the rate an untrained readout predicts) ride along for the
    Poisson loss (:mod:`neurossl.objectives.poyo_ssl`).
    Why: raw dF/F scales differ several-fold between neurons and sessions, so without it
    the value embedding and the reconstruction loss are dominated by a few bright cells
    and a new animal's traces land off the range the pretrained encoder saw.
    """

    def __init__(
        self,
        vocab: DatasetVocab,
        unit_keys: Sequence[str],
        session_keys: Sequence[str],
        unit_norm: Sequence[Sequence[float]] | None = None,
    ):
        self.unit = _lookup(vocab.unit_index, unit_keys, "unit")
        self.session = _lookup(vocab.session_index, session_keys, "session")
        self.mean = torch.zeros(len(vocab.unit_index))
        self.scale = torch.ones(len(vocab.unit_index))
        self.log_mean = torch.zeros(len(vocab.unit_index))
        if unit_norm is not None:
            if len(unit_norm) != len(unit_keys):
                raise ValueError(
                    f"unit_norm has {len(unit_norm)} rows for {len(unit_keys)} unit keys"
                )
            index = vocab.unit_index
            for key, (mean, std) in zip(unit_keys, unit_norm, strict=True):
                self.mean[index[key]] = float(mean)
                self.scale[index[key]] = 1.0 / float(std)
                self.log_mean[index[key]] = math.log(max(float(mean), _RATE_FLOOR))
        self._on: dict[torch.device, tuple[Tensor, ...]] = {}

    def apply(self, batch: Batch) -> Batch:
        device = batch["unit"].device
        if device not in self._on:
            self._on[device] = tuple(
                t.to(device)
                for t in (self.unit, self.session, self.mean, self.scale, self.log_mean)
            )
        unit_map, session_map, mean, scale, log_mean = self._on[device]
        valid = batch["neuron_mask"]
        unit = torch.where(valid, unit_map[batch["unit"]], 0)
        session = session_map[batch["session"]]
        if (unit < 0).any() or (session < 0).any():
            raise KeyError("a batch holds units or sessions that have no row in the model")
        ids = batch["unit"]
        raw = batch["activity"]
        activity = (raw - mean[ids][:, None, :]) * scale[ids][:, None, :]
        activity = torch.where(valid[:, None, :], activity, torch.zeros_like(activity))
        counts = torch.where(valid[:, None, :], raw, torch.zeros_like(raw))
        return batch | {
            "unit": unit,
            "session": session,
            "activity": activity,
            "counts": counts,
            "log_mean": torch.where(valid, log_mean[ids], 0.0),
        }

    def to_dff(self, values: Tensor, ids: Tensor) -> Tensor:
        """Standardised values [B, T, N] of dataset units ``ids`` [B, N] back in dF/F."""
        mean, scale = self.mean.to(values.device), self.scale.to(values.device)
        return values.float() / scale[ids][:, None, :] + mean[ids][:, None, :]


def unit_statistics(dataset: WindowDataset, keys: Sequence[str]) -> list[list[float]]:
    """[mean, std] of each unit key's dF/F over the dataset's windows (the train split),
    by :func:`neurossl.data.unit_stats.unit_moments` (a flat trace gets std 1)."""
    mean, std = unit_moments(dataset, keys)
    return [[float(m), float(s)] for m, s in zip(mean, std, strict=True)]


def _lookup(index: dict[str, int], keys: Sequence[str], what: str) -> Tensor:
    table = torch.full((len(index),), -1, dtype=torch.int64)
    for row, key in enumerate(keys):
        if key not in index:
            raise KeyError(f"model {what} {key!r} is not in the dataset's vocabulary")
        table[index[key]] = row
    return table


def _mapped(loss_fn: LossFn, maps: RowMaps) -> LossFn:
    def wrapped(model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        return loss_fn(model, maps.apply(batch))

    return wrapped


def _neuron_ids(
    inputs: StageInputs, sessions: Sequence[str], chosen: dict[str, list[str]] | None
) -> dict[str, list[str]]:
    """Neuron ids per session in reading order (all neurons when ``chosen`` is None)."""
    if chosen is not None:
        return chosen
    return {s: [str(i) for i in read_neurons(inputs.session_paths[s])["id"]] for s in sessions}


def _unit_keys(ids: dict[str, list[str]]) -> list[str]:
    return [f"{s}/{n}" for s, neurons in ids.items() for n in neurons]


def _datasets(
    inputs: StageInputs, ids: dict[str, list[str]]
) -> tuple[WindowDataset, WindowDataset | None]:
    sessions = list(ids)
    train_ds = WindowDataset(inputs.session_paths, inputs.splits, "train", sessions, ids)
    valid_ds = WindowDataset(inputs.session_paths, inputs.splits, "valid", sessions, ids)
    return train_ds, (valid_ds if len(valid_ds) else None)


def _save_model(path: Path, model: Perceiver, payload: dict[str, Any]) -> None:
    """Write the model file (:mod:`neurossl.train.model_file`); ``payload`` names the
    method and stage."""
    rest = dict(payload)
    method, stage = rest.pop("method"), rest.pop("stage")
    save_model_file(path, "perceiver", method, stage, {
        "spec": model.spec(),
        "state_dict": model.state_dict(),
        "n_parameters": backbone_parameters(model),
        "n_parameters_total": sum(p.numel() for p in model.parameters()),
    } | rest)  # fmt: skip


def load_model(path: Path) -> tuple[Perceiver, dict[str, Any]]:
    """A saved Perceiver and the rest of its file (keys, task heads, provenance)."""
    payload = load_model_file(path, "perceiver")
    for key in ("spec", "state_dict", "unit_keys", "session_keys"):
        if key not in payload:
            raise ValueError(f"{path}: Perceiver model file lacks {key!r}")
    model = Perceiver.from_spec(payload["spec"])
    model.load_state_dict(payload["state_dict"])
    return model, payload


@dataclass(frozen=True)
class PoyoMethod:
    name: str
    modality: str = MODALITY
    finetune_only_hparams: ClassVar[frozenset[str]] = finetune_only_keys(PoyoHParams)

    @property
    def pretrains(self) -> bool:
        return catalog.method(self.name).pretrains

    def supported_tasks(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        """Calcium: decoding, and forecasting by the separate read-out (module docstring);
        :meth:`tasks_on` gives the spiking set."""
        return tuple(t for t in tasks if is_decoding_task(t) or t == FORECASTING)

    def tasks_on(self, modality: str, tasks: tuple[str, ...]) -> tuple[str, ...]:
        """The configured tasks scored on ``modality``: on spikes also the query tasks,
        answered by the reconstruction readout (see :meth:`_score_queries`)."""
        if modality == "spikes":
            return tuple(t for t in tasks if t in SPIKING_QUERY_TASKS or is_decoding_task(t))
        return self.supported_tasks(tasks)

    def _train_config(
        self, hp: PoyoHParams, seed: int, steps: int, lr: float, **kw: Any
    ) -> TrainConfig:
        return TrainConfig(
            max_steps=steps,
            lr=lr,
            weight_decay=hp.weight_decay,
            warmup_steps=min(hp.warmup_steps, steps),
            batch_size=hp.batch_size,
            eval_every=hp.eval_every,
            checkpoint_every=50,
            patience=hp.patience,
            seed=seed,
            **kw,
        )

    # --- stages ---

    def pretrain(self, inputs: StageInputs, outputs: StageOutputs) -> None:
        if not self.pretrains:
            raise RuntimeError(f"{self.name} has no pretraining stage")
        modality = session_modality(inputs)
        hp = read_hparams(self.name, inputs.hparams, modality)
        device = resolve_device(inputs.device)
        seed_everything(inputs.seed)
        sessions = inputs.splits.pretrain_sessions
        chosen = diet_neuron_ids(inputs.splits, modality, sessions, hp.neuron_diet)
        ids = _neuron_ids(inputs, sessions, chosen)
        train_ds, valid_ds = _datasets(inputs, ids)
        unit_keys, session_keys = _unit_keys(ids), list(ids)
        model = Perceiver(make_config(inputs.size), len(unit_keys), len(session_keys))
        if modality == "spikes":
            _calibrate_readout(model)
        unit_norm = unit_statistics(train_ds, unit_keys)
        maps = RowMaps(train_ds.vocab, unit_keys, session_keys, unit_norm)
        frames = model.config.frames_per_token
        tasks = tuple(t for t in inputs.tasks if is_decoding_task(t))
        aux_heads = fit_task_heads(tasks, train_ds) if hp.aux_weight else []
        _attach_heads(model, aux_heads, train_ds)
        loss_fn = _mapped(
            reconstruction_loss_fn(
                hp.mask_ratio,
                hp.mask_span,
                frames,
                aux_heads,
                hp.aux_weight,
                hp.reconstruction_weight,
                _LIKELIHOOD[modality],
            ),
            maps,
        )
        checkpoints = _required(outputs.checkpoint_dir, "checkpoint_dir")
        train(
            model,
            loss_fn,
            make_loader(train_ds, hp.batch_size, True, inputs.seed, by_session=False),
            _valid_loader(valid_ds, hp, inputs.seed),
            self._train_config(hp, inputs.seed, hp.max_steps, hp.lr),
            checkpoints,
            _required(outputs.train_log, "train_log"),
            device,
        )
        _save_model(
            _required(outputs.model, "model"),
            model.cpu(),
            {
                "unit_keys": unit_keys,
                "session_keys": session_keys,
                "unit_norm": unit_norm,
                "method": self.name,
                "size": inputs.size,
                "stage": "pretrain",
                "modality": modality,
                "neuron_diet": hp.neuron_diet,
            },
        )

    def finetune(self, inputs: StageInputs, pretrained: Path | None, outputs: StageOutputs) -> None:
        modality = session_modality(inputs)
        hp = read_hparams(self.name, inputs.hparams, modality)
        device = resolve_device(inputs.device)
        seed_everything(inputs.seed)
        scored = self.tasks_on(modality, inputs.tasks)
        if not scored:
            raise ValueError(f"{self.name}: none of the tasks {inputs.tasks} runs on {modality}")
        if modality == "spikes":
            _check_query_population(scored, hp.finetune_neurons, self.name)
        tasks = tuple(t for t in scored if is_decoding_task(t))
        sessions = inputs.splits.heldout_sessions
        chosen = diet_neuron_ids(inputs.splits, modality, sessions, hp.finetune_neurons)
        ids = _neuron_ids(inputs, sessions, chosen)
        train_ds, valid_ds = _datasets(inputs, ids)
        new_units = _unit_keys(ids)
        model, unit_keys, session_keys, new_rows, unit_norm = self._adapted_model(
            inputs, pretrained, new_units, list(ids)
        )
        if modality == "spikes" and not self.pretrains:
            _calibrate_readout(model)
        unit_norm = unit_norm + unit_statistics(train_ds, new_units)
        heads = fit_task_heads(tasks, train_ds)
        _attach_heads(model, heads, train_ds)
        maps = RowMaps(train_ds.vocab, unit_keys, session_keys, unit_norm)
        checkpoints = _required(outputs.checkpoint_dir, "checkpoint_dir")
        queries = modality == "spikes" and scored != tasks
        phases = _phases(hp, model.config, new_rows, heads, modality, queries)
        logs = []
        for phase, steps, lr, trainable, loss_fn in phases:
            if steps < 1:
                continue
            phase_dir = checkpoints / phase
            train(
                model,
                _mapped(loss_fn, maps),
                make_loader(train_ds, hp.batch_size, True, inputs.seed, by_session=False),
                _valid_loader(valid_ds, hp, inputs.seed),
                self._train_config(hp, inputs.seed, steps, lr, trainable=trainable),
                phase_dir,
                phase_dir / "train_log.csv",
                device,
            )
            logs.append((phase, phase_dir / "train_log.csv"))
        if not logs:
            raise ValueError(f"hparams.{self.name}: every fine-tuning phase has 0 steps")
        forecaster = {}
        if modality == "calcium" and FORECASTING in scored:
            fitted = self._fit_forecaster(
                inputs, hp, model, (unit_keys, session_keys, unit_norm), checkpoints, device
            )
            forecaster = {"forecaster": fitted}
            logs.append(("forecast", checkpoints / "forecast" / "train_log.csv"))
        publish(logs, _required(outputs.train_log, "train_log"))
        _save_model(
            _required(outputs.model, "model"),
            model.cpu(),
            forecaster
            | {
                "unit_keys": unit_keys,
                "session_keys": session_keys,
                "unit_norm": unit_norm,
                "task_heads": [h.to_json() for h in heads],
                "method": self.name,
                "size": inputs.size,
                "stage": "finetune",
                "modality": modality,
                "finetune_neurons": hp.finetune_neurons,
            },
        )

    def _fit_forecaster(
        self,
        inputs: StageInputs,
        hp: PoyoHParams,
        finetuned: Perceiver,
        rows: tuple[list[str], list[str], list[list[float]]],
        checkpoints: Path,
        device: str,
    ) -> dict[str, Any]:
        """The forecasting read-out phase (module docstring): a frozen-trunk copy of
        ``finetuned`` learns rows for the held-out ROIs it lacks and the reconstruction
        query path on forecast-shaped masks; returns what the model file keeps of it."""
        unit_keys, session_keys, unit_norm = rows
        every = _neuron_ids(inputs, inputs.splits.heldout_sessions, None)
        known = set(unit_keys)
        extra = [key for key in _unit_keys(every) if key not in known]
        train_ds, valid_ds = _datasets(inputs, every)
        extra_norm = unit_statistics(train_ds, extra)
        # Seeded here, so new rows start the same whether or not the job resumed after
        # the earlier phases (they draw from the global RNG).
        seed_everything(inputs.seed)
        model = copy.deepcopy(finetuned)
        new_block = model.extend_units(len(extra)) if extra else None

        def trainable(name: str) -> bool:
            return name == new_block or name.startswith(_FORECAST_READOUT)

        maps = RowMaps(train_ds.vocab, unit_keys + extra, session_keys, unit_norm + extra_norm)
        loss_fn = _forecast_loss_fn(hp.context, hp.horizon, model.config.frames_per_token)
        phase_dir = checkpoints / "forecast"
        train(
            model,
            _mapped(loss_fn, maps),
            make_loader(train_ds, hp.batch_size, True, inputs.seed, by_session=False),
            _valid_loader(valid_ds, hp, inputs.seed),
            self._train_config(
                hp, inputs.seed, hp.forecast_steps, hp.unit_id_lr or hp.lr, trainable=trainable
            ),
            phase_dir,
            phase_dir / "train_log.csv",
            device,
        )
        state = {k: v.detach().cpu() for k, v in model.state_dict().items() if trainable(k)}
        return {"unit_keys": extra, "unit_norm": extra_norm, "state_dict": state}

    def _adapted_model(
        self,
        inputs: StageInputs,
        pretrained: Path | None,
        new_units: list[str],
        new_sessions: list[str],
    ) -> tuple[Perceiver, list[str], list[str], set[str], list[list[float]]]:
        """The model to fine-tune, its row keys, the names of the held-out rows and the
        saved standardisation of the pretrained units.

        Pretrained: the saved model with new unit/session blocks appended. Scratch: a
        fresh model whose only rows are the held-out ones (its block 0).
        """
        if not self.pretrains:
            model = Perceiver(make_config(inputs.size), len(new_units), len(new_sessions))
            new_rows = {"unit_embed.blocks.0", "session_embed.blocks.0"}
            return model, new_units, new_sessions, new_rows, []
        if pretrained is None:
            raise ValueError(f"{self.name}: fine-tuning needs the pretrained model file")
        model, saved = load_model(pretrained)
        if saved.get("size") != inputs.size:
            raise ValueError(f"{pretrained}: size {saved.get('size')!r}, stage has {inputs.size!r}")
        clash = sorted(set(new_units) & set(saved["unit_keys"]))
        if clash:
            raise ValueError(f"{pretrained}: held-out units {clash[:3]} were pretrained on")
        new_rows = {model.extend_units(len(new_units)), model.extend_sessions(len(new_sessions))}
        unit_keys = list(saved["unit_keys"]) + new_units
        session_keys = list(saved["session_keys"]) + new_sessions
        return model, unit_keys, session_keys, new_rows, _saved_norm(saved, pretrained)

    def evaluate(self, inputs: StageInputs, finetuned: Path | None) -> Evaluation:
        modality = session_modality(inputs)
        hp = read_hparams(self.name, inputs.hparams, modality)
        if finetuned is None:
            raise ValueError(f"{self.name}: evaluation needs the fine-tuned model file")
        device = resolve_device(inputs.device)
        model, saved = load_model(finetuned)
        if "task_heads" not in saved:
            raise ValueError(f"{finetuned}: not a fine-tuned model (no task heads)")
        if saved.get("modality", "calcium") != modality:
            raise ValueError(
                f"{finetuned}: fine-tuned on {saved.get('modality')}, evaluated on {modality}"
            )
        model.to(device).eval()
        heads = {h.name: h for h in (TaskHead.from_json(p) for p in saved["task_heads"])}
        scored = self.tasks_on(modality, inputs.tasks)
        decoding = [t for t in scored if is_decoding_task(t)]
        queries = [t for t in scored if not is_decoding_task(t)]
        forecaster = None
        if modality == "spikes":
            _check_query_population(scored, saved["finetune_neurons"], self.name)
        elif queries:
            forecaster = _load_forecaster(model, saved, finetuned)
            forecaster.model.to(device)
        tasks = [t for t in decoding if t in heads]
        missing = sorted(set(decoding) - set(heads))
        if missing:
            raise ValueError(f"{finetuned}: no fine-tuned head for task(s) {missing}")
        sessions = inputs.splits.heldout_sessions
        chosen = diet_neuron_ids(inputs.splits, modality, sessions, saved["finetune_neurons"])
        ids = _neuron_ids(inputs, sessions, chosen)
        evaluation = Evaluation()
        for session in ids:
            test = WindowDataset(
                inputs.session_paths,
                inputs.splits,
                inputs.eval_split,
                [session],
                {session: ids[session]},
            )
            if not len(test):
                continue
            maps = RowMaps(
                test.vocab, saved["unit_keys"], saved["session_keys"], _saved_norm(saved, finetuned)
            )
            if forecaster is not None:
                _forecast(inputs, session, forecaster, hp, device, evaluation)
            else:
                for task in queries:
                    _score_queries(inputs, task, session, model, test, maps, hp, device, evaluation)
            if not tasks:
                continue
            batches = make_loader(test, hp.batch_size, False, 0, by_session=True)
            chosen_heads = [heads[t] for t in tasks]
            score_heads(
                model,
                batches,
                chosen_heads,
                device,
                hp.frame_delta,
                inputs,
                session,
                evaluation,
                prepare=maps.apply,
            )
        return evaluation


def _saved_norm(saved: dict[str, Any], path: Path) -> list[list[float]]:
    if "unit_norm" not in saved:
        raise ValueError(
            f"{path}: Perceiver model file lacks 'unit_norm' (written by an older version)"
        )
    return [list(map(float, row)) for row in saved["unit_norm"]]


def _check_query_population(tasks: Sequence[str], population: str, method: str) -> None:
    """Query tasks are defined on every neuron of a session (see :func:`read_hparams`)."""
    asked = [t for t in tasks if t in SPIKING_QUERY_TASKS]
    if asked and population != "all":
        raise ValueError(
            f"hparams.{method}: spiking tasks {asked} score every neuron of a held-out "
            f"session, but finetune_neurons is {population!r}; set it to 'all' (the "
            "default on spikes) or drop those tasks"
        )


def _phases(
    hp: PoyoHParams,
    config: PerceiverConfig,
    new_rows: set[str],
    heads: Sequence[TaskHead],
    modality: str,
    queries: bool,
) -> list[tuple[str, int, float, Callable[[str], bool] | None, LossFn]]:
    """(name, steps, lr, trainable-parameter filter, loss) of each fine-tuning phase.

    With spiking query tasks the reconstruction readout is what they are scored on, so
    phases 2 and 3 train it too: Poisson reconstruction plus the decoding losses (only
    the reconstruction when no decoding task is configured), as MtM fine-tunes with
    its own objective on the held-out sessions.
    """
    last_layers = range(max(0, config.depth - hp.unfreeze_layers), config.depth)
    readout = ("heads.", "task_embed.", "decoder.", "out_norm.")
    readout += tuple(f"latent_layers.{i}." for i in last_layers)
    reconstruction = reconstruction_loss_fn(
        hp.mask_ratio, hp.mask_span, config.frames_per_token, likelihood=_LIKELIHOOD[modality]
    )
    task_loss = task_loss_fn(heads) if heads else reconstruction
    if queries and heads:
        task_loss = _sum_losses(reconstruction, task_loss_fn(heads))
    unit_id_loss = task_loss if hp.unit_id_loss == "task" and heads else reconstruction
    return [
        ("unit_id", hp.unit_id_steps, hp.unit_id_lr or hp.lr, new_rows.__contains__, unit_id_loss),
        (
            "heads",
            hp.head_steps,
            hp.lr,
            lambda n: n in new_rows or n.startswith(readout),
            task_loss,
        ),
        ("full", hp.full_steps, hp.lr * hp.full_lr_scale, None, task_loss),
    ]


def _calibrate_readout(model: Perceiver) -> None:
    """Zero the reconstruction head, so a new model's log-rate is each unit's log mean
    count (the offset of :func:`~neurossl.objectives.poyo_ssl.log_rates`): training starts
    at the null model's bits/spike rather than at random rates, as NDT's read-out does."""
    head = model.heads[RECONSTRUCTION]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()


def _sum_losses(*losses: LossFn) -> LossFn:
    def loss_fn(model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        total, info = None, {}
        for i, fn in enumerate(losses):
            loss, part = fn(model, batch)
            total = loss if total is None else total + loss
            info |= {f"{k}_{i}": v for k, v in part.items()} | {f"loss_{i}": float(loss.detach())}
        return total, info

    return loss_fn


def _score_queries(
    inputs: StageInputs,
    task: str,
    session: str,
    model: Perceiver,
    test: WindowDataset,
    maps: RowMaps,
    hp: PoyoHParams,
    device: str,
    evaluation: Evaluation,
) -> None:
    """One spiking task on one session's test windows, scored like every spiking method.

    Each query of :func:`~neurossl.eval.queries.spiking_queries` hides the entries the
    model may not see behind the mask token (as pretraining masks them, so the unit
    embedding of a held-out neuron still says *which* neuron to predict) and reads the
    reconstruction readout's rates there: co-smoothing queries the held-out units'
    embeddings, which unit identification fitted on the train windows, where every
    neuron is visible (NLB's convention). A token is hidden when any of its samples is,
    so nothing hidden leaks through a partly visible token.
    """
    neurons = read_neurons(inputs.session_paths[session])
    held = set(map(str, inputs.splits.neuron_group("spikes", session, "held_out")))
    held_out = np.array([str(i) in held for i in neurons["id"]])
    regions = neurons["region"].astype(str).to_numpy()
    counts = np.stack([test[i]["activity"] for i in range(len(test))]).astype(np.float32)
    queries = spiking_queries(task, regions, held_out, counts.shape[1], inputs.splits.seed)
    if not queries:
        return  # the session cannot pose this task (e.g. one region)
    predictions = []
    with torch.no_grad(), autocast(device):
        for query in queries:
            hidden = torch.from_numpy(~query.visible).to(device)
            rates = []
            for batch in make_loader(test, hp.batch_size, False, 0, by_session=True):
                batch = maps.apply({k: v.to(device) for k, v in batch.items()})
                mask = hidden.expand(batch["activity"].shape[0], -1, -1)
                mask = mask & batch["neuron_mask"][:, None, :]
                out = model(batch, (RECONSTRUCTION,), mask)[RECONSTRUCTION]
                rates.append(torch.exp(log_rates(out, batch)).cpu().numpy())
            predictions.append(np.concatenate(rates).astype(np.float64))
    values, pred = score_queries(queries, predictions, counts, "spikes")
    evaluation.rows.extend(make_rows(inputs, session, task, values))
    evaluation.arrays[f"{task}/{session}/pred"] = pred.astype(np.float32)
    evaluation.arrays[f"{task}/{session}/target"] = counts


def _forecast_input(
    batch: Batch, context: int, horizon: int, frames_per_token: int
) -> tuple[Batch, Tensor, slice]:
    """The forecast-shaped view of windows [B, T, N]: frames ``context mod F`` to
    ``context + horizon``, the horizon zeroed and hidden (mask [B, T', N]), and the slice
    of the view that holds the horizon. See the module docstring for the frame drop."""
    n_frames = batch["activity"].shape[1]
    if context + horizon > n_frames:
        raise ValueError(
            f"windows of {n_frames} frames are shorter than context {context} + horizon "
            f"{horizon}; lower the 'context'/'horizon' hparams or use longer windows"
        )
    start, end = context % frames_per_token, context + horizon
    future = slice(context - start, end - start)
    activity = batch["activity"][:, start:end].clone()
    activity[:, future] = 0.0
    hidden = torch.zeros_like(activity, dtype=torch.bool)
    hidden[:, future] = True
    hidden &= batch["neuron_mask"][:, None, :]
    view = batch | {"activity": activity, "time": batch["time"][:, start:end]}
    return view, hidden, future


def _forecast_loss_fn(context: int, horizon: int, frames_per_token: int) -> LossFn:
    """Squared error of the read-out at the hidden horizon frames (batch already mapped)."""

    def loss_fn(model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        view, hidden, _ = _forecast_input(batch, context, horizon, frames_per_token)
        out = model(view, (RECONSTRUCTION,), hidden)[RECONSTRUCTION]
        start = context % frames_per_token
        target = batch["activity"][:, start : context + horizon]
        loss, count = masked_mse(out, target, hidden)
        return loss, {"forecast_entries": float(count)}

    return loss_fn


@dataclass(frozen=True)
class Forecaster:
    """The forecasting read-out and the row keys and standardisation of its tables."""

    model: Perceiver
    unit_keys: list[str]
    session_keys: list[str]
    unit_norm: list[list[float]]


def _load_forecaster(model: Perceiver, saved: dict[str, Any], path: Path) -> Forecaster:
    """The forecasting read-out rebuilt from the fine-tuned model and the file's
    ``forecaster`` entry, with the unit keys and standardisation of all its rows."""
    if "forecaster" not in saved:
        raise ValueError(
            f"{path}: no forecasting read-out ('forecaster'); the model was fine-tuned "
            "without 'forecasting' among the calcium tasks, rerun fine-tuning with it"
        )
    entry = saved["forecaster"]
    forecaster = copy.deepcopy(model)
    if entry["unit_keys"]:
        forecaster.extend_units(len(entry["unit_keys"]))
    missing = set(entry["state_dict"]) - set(forecaster.state_dict())
    if missing:
        raise ValueError(f"{path}: forecaster weights {sorted(missing)[:3]} fit no parameter")
    forecaster.load_state_dict(entry["state_dict"], strict=False)
    unit_keys = list(saved["unit_keys"]) + list(entry["unit_keys"])
    norm = _saved_norm(saved, path) + [list(map(float, r)) for r in entry["unit_norm"]]
    return Forecaster(forecaster.eval(), unit_keys, list(saved["session_keys"]), norm)


def _forecast(
    inputs: StageInputs,
    session: str,
    forecaster: Forecaster,
    hp: PoyoHParams,
    device: str,
    evaluation: Evaluation,
) -> None:
    """Forecasting of every ROI of one held-out session's test windows from their context
    frames only, in dF/F, scored per horizon step like every calcium method."""
    model, frames = forecaster.model, forecaster.model.config.frames_per_token
    ids = _neuron_ids(inputs, [session], None)
    test = WindowDataset(inputs.session_paths, inputs.splits, inputs.eval_split, [session], ids)
    if not len(test):
        return
    maps = RowMaps(test.vocab, forecaster.unit_keys, forecaster.session_keys, forecaster.unit_norm)
    preds, futures = [], []
    with torch.no_grad(), autocast(device):
        for batch in make_loader(test, hp.batch_size, False, 0, by_session=True):
            n = int(batch["neuron_mask"][0].sum())  # one session: its neurons lead
            raw = batch["activity"][:, :, :n].numpy()
            # The targets every calcium method is scored on; the model gets only the past.
            futures.append(forecast_windows(raw, hp.context, hp.horizon)[1])
            mapped = maps.apply({k: v.to(device) for k, v in batch.items()})
            view, hidden, future = _forecast_input(mapped, hp.context, hp.horizon, frames)
            out = model(view, (RECONSTRUCTION,), hidden)[RECONSTRUCTION][:, future]
            dff = maps.to_dff(out, batch["unit"].to(device))[:, :, :n]
            preds.append(dff.cpu().numpy().astype(np.float32))
    pred, target = np.concatenate(preds), np.concatenate(futures).astype(np.float32)
    evaluation.rows.extend(make_rows(inputs, session, FORECASTING, horizon_metrics(pred, target)))
    evaluation.arrays[f"{FORECASTING}/{session}/pred"] = pred
    evaluation.arrays[f"{FORECASTING}/{session}/target"] = target


def _required(path: Path | None, what: str) -> Path:
    if path is None:
        raise ValueError(f"the stage was not given an output path for {what!r}")
    return Path(path)


def _valid_loader(dataset: WindowDataset | None, hp: PoyoHParams, seed: int) -> WindowLoader | None:
    if dataset is None:
        return None
    return make_loader(dataset, hp.batch_size, False, seed, by_session=False)


def _attach_heads(model: Perceiver, heads: Sequence[TaskHead], train_ds: WindowDataset) -> None:
    """One head per task; a pretrained head of the same spec is kept (``set_task``).

    A window-label head reads every latent chunk of a window, per-bin heads one.
    """
    window_chunks = 1
    if any(head.kind == CLASSIFICATION for head in heads):
        window_chunks = model.chunks_per_window(torch.tensor(train_ds[0]["time"])[None])
    for head in heads:
        slots = window_chunks if head.kind == CLASSIFICATION else 1
        model.set_task(head.name, head.kind, head.n_out, slots)


def make_method(name: str) -> PoyoMethod:
    if name not in _FAMILY:
        raise ValueError(f"{name!r} is not a Perceiver-family method; expected one of {_FAMILY}")
    return PoyoMethod(name)
