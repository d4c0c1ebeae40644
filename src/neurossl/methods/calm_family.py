"""CalM (tokenizer + dual-axis autoregressive transformer) and its scratch ablation.

Stages:

- ``train_tokenizer`` (once per dataset and modality, its own rule): per-unit statistics of
  the training windows, then the tokenizer on the *pretraining sessions'* training
  windows; writes the checkpoint and a JSON report (reconstruction R^2, perplexity, code
  usage) on the pretraining sessions' validation windows and on the held-out sessions'
  training windows (new animals), plus the same metrics for every vocabulary size of
  ``vocab_sweep`` and for the alternative quantiser.
- ``pretrain`` (``calm`` only): next-code cross-entropy on the pretraining sessions.
- ``finetune``: (A) self-supervised adaptation to the held-out sessions (next-code loss;
  new unit and session embeddings train with the backbone), then (B) one supervised
  fine-tune of backbone + every decoding head at once (sum of head losses + weighted
  next-code loss). One multi-task run instead of one backbone per task because a job
  trains all heads and per-task backbones would multiply its cost by the task count.
- ``evaluate`` on the held-out sessions' test windows: forecasting by rollout of model
  (A) (pure next-code model; identical windows to the baselines via
  ``forecast_windows``), decoding by the heads of model (B) (reported under the method
  name), and the shared linear decoders (:mod:`neurossl.eval.decoding`) on per-neuron
  frozen states of model (A), reported as ``frozen_<metric>`` rows of the same task.
  Before (B), the heads are probed on the frozen states of (A) (LP-FT), so (B) starts
  from a linear probe instead of from chance.

``scratch_dual_axis`` is the same model and fine-tuning without pretraining: (A) starts
from random weights. It uses the *same trained tokenizer*: the codes are the model's
input representation (like a fixed feature extractor), so sharing it isolates the effect
of pretraining the backbone.

hparams: :class:`~neurossl.methods.hparam_models.CalmHParams` (defaults keep CalM's three
stages at a few CPU-seconds each on the default synthetic data; every key, default and
bound is listed in ``docs/hparams.md``).

``context``/``horizon`` equal the forecasting baselines' defaults, so every method is
scored on identical windows.

Tokenizer stage hparams (``config hparams.tokenizer``):
:class:`~neurossl.methods.hparam_models.TokenizerHParams`.

The default quantiser is FSQ, not the published Gumbel-softmax, on measurement: on the
default synthetic data (300 steps, K = 256) FSQ reconstructs validation windows with
R^2 0.947 (perplexity 40) against 0.907 (perplexity 45) for Gumbel with the
orthogonality and usage terms. Gumbel stays one hparam away and is trained as the
alternative in every tokenizer report, so the comparison is rerun on each dataset.

On binned spike counts (the Session files' modality picks the path; the calcium path is
unchanged). What changes to fit CalM to spikes, and why (the input and the read-outs are
argued in :mod:`neurossl.objectives.calm_spikes`):

- Input: the tokenizer and the backbone read the causal, square-rooted exponential
  smoothing of each unit's counts (tau 50 ms), z-scored per unit with the trace's
  training-window moments; the tokenizer is trained per (dataset, modality), so spike
  traces get their own vocabulary (the rule's ``tokenizer/{modality}/`` folder).
- Objective: CalM's next-code cross-entropy, unchanged; the next-patch term is the
  Poisson NLL of the next patch's raw counts from a rate read-out (instead of the MSE of
  normalised frames), with each unit's log mean count as its offset, so rates start at
  the bits/spike null.
- Adaptation for the rate tasks, declared once, the same for ``calm`` and
  ``scratch_dual_axis``: phase (A) adds a second pass per step whose hidden tokens
  (random whole neurons or the last steps, ``hide_ratio``) train the query read-out with
  the Poisson NLL of their counts (``query_weight``), on the held-out sessions' train
  windows with every unit visible to sampling (NLB's convention for co-smoothing's
  held-out units). Phase (B) and the heads are calcium's.
- Tasks: co-smoothing, forecasting, inter- and intra-region are the queries of
  :func:`neurossl.eval.queries.spiking_queries`, answered by model (A) with the query's
  tokens hidden and scored by :func:`neurossl.eval.scoring.score_queries` (bits/spike,
  Poisson D^2), the path every spiking method uses; a window's last, partial patch is
  appended as hidden tokens, so every bin gets a rate. Decoding (choice, behaviour) is
  calcium's: heads of model (B) and ``frozen_`` probes of model (A).
- Budgets: the ``spikes`` hparam key overrides any other key on spiking recordings, and
  ``hparams.tokenizer.spikes`` the spiking tokenizer's.

Why these defaults (chosen on the held-out sessions' *validation* windows, seed 0; see
``benchmarks/RESULTS.md``): the forecast is the ``direct`` read-out of the next patch
(:mod:`neurossl.objectives.calm`), trained jointly with the next-code cross-entropy, and
the backbone sees each patch's frames next to its code. Decoding the code distribution
(``expected``, 16 sampled paths) lost to linear AR at short horizons: the codes erase
the exact level of the last context frames (tokenizer reconstruction MAE ~0.07 dF/F,
already most of linear AR's 1-step error) and 16 samples add Monte-Carlo noise, while
costing 16x the rollout. With the read-out, a per-patch tokenizer (``layers`` 0,
K = 64) and a one-layer ``tiny`` backbone, 100 + 60 steps suffice; the CPU cost of a
step is proportional to the B * T/P * N tokens, so P = 2 would double it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from neurossl import catalog
from neurossl.atomic import write_json
from neurossl.contract import (
    Evaluation,
    StageInputs,
    StageOutputs,
    session_bin_size,
    session_modality,
)
from neurossl.data.loader import DatasetVocab, WindowDataset, make_loader
from neurossl.data.session import read_neurons
from neurossl.data.unit_stats import unit_moments
from neurossl.device import autocast, resolve_device
from neurossl.eval.decoding import decode_continuous, decode_discrete
from neurossl.eval.metrics import accuracy, balanced_accuracy, horizon_metrics, r2
from neurossl.eval.queries import SPIKING_QUERY_TASKS, forecast_windows, spiking_queries
from neurossl.eval.records import eval_trials, put_decoded, put_decoding
from neurossl.eval.rows import make_rows
from neurossl.eval.scoring import score_queries
from neurossl.hparams import check, finetune_only_keys
from neurossl.methods.hparam_models import CalmHParams, TokenizerHParams
from neurossl.methods.task_heads import find_label_key
from neurossl.models.dual_axis import DualAxisConfig, preset
from neurossl.models.tokenizer import Tokenizer, TokenizerConfig, load_tokenizer, save_tokenizer
from neurossl.names import BEHAVIOR_PREFIX, STIMULUS_PREFIX, frozen_metric
from neurossl.objectives.calm import (
    HEAD_RANK,
    CalmNetwork,
    HeadSpec,
    SpikeInput,
    UnitScaler,
    add_losses,
    forecast,
    head_outputs,
    make_finetune_loss,
    make_pretrain_loss,
    make_query_loss,
    probe_heads,
    probe_rates,
    query_counts,
)
from neurossl.objectives.calm_spikes import query_hide, spike_trace
from neurossl.objectives.tokenizer import FitConfig, fit_tokenizer, tokenizer_report
from neurossl.train.engine import TrainConfig, train
from neurossl.train.model_file import load_model_file, save_model_file
from neurossl.train.runtime import seed_everything
from neurossl.train_logs import publish

METHOD_NAMES = ("calm", "scratch_dual_axis")


_TOKENIZER_MODEL_KEYS = {f.name for f in dataclasses.fields(TokenizerConfig)}
_BACKBONE_KEYS = ("width", "layers", "heads", "mlp_ratio", "dropout")


SPIKES = "spikes"
#: Floor of a unit's mean count per bin before its log (a unit silent in training).
MIN_MEAN_COUNT = 1e-4


def _with_overrides(values: dict[str, Any], spikes: bool) -> dict[str, Any]:
    """``values`` with their ``spikes`` overrides merged in on spiking recordings."""
    values = dict(values)
    overrides = values.pop(SPIKES, None) or {}
    return values | overrides if spikes else values


def _hparams(inputs: StageInputs) -> dict[str, Any]:
    """The stage's hparams checked by :class:`CalmHParams` (defaults filled in); the
    ``spikes`` key's overrides apply on spiking recordings."""
    values = _with_overrides(inputs.hparams, _on_spikes(inputs))
    return check(inputs.method, CalmHParams, values).model_dump()


def _on_spikes(inputs: StageInputs) -> bool:
    return session_modality(inputs) == SPIKES


# --- data ---------------------------------------------------------------------------


def _batches(dataset: WindowDataset, batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    """Every window of a dataset, in order, as single-session batches."""
    if len(dataset) == 0:
        return []
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0, by_session=True)
    return list(loader)


def unit_statistics(inputs: StageInputs) -> UnitScaler:
    """Mean and standard deviation of every unit over its session's *training* windows
    (on spikes: of the smoothed trace the tokenizer reads).

    Every session (pretraining and held-out) uses only its own train split, so no test
    frame informs the normalisation.
    """
    dataset = _train_windows(inputs)
    if _on_spikes(inputs):
        dataset = _TraceWindows(dataset, session_bin_size(inputs))
    mean, std = unit_moments(dataset)
    return UnitScaler(mean, std)


def _train_windows(inputs: StageInputs) -> WindowDataset:
    return WindowDataset(inputs.session_paths, inputs.splits, "train", sorted(inputs.session_paths))


class _TraceWindows:
    """A window dataset whose items carry the smoothed spike trace as their activity."""

    def __init__(self, dataset: WindowDataset, bin_size: float) -> None:
        self.dataset, self.bin_size, self.vocab = dataset, bin_size, dataset.vocab

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[i]
        return dict(item, activity=spike_trace(item["activity"], self.bin_size))


def spike_input(inputs: StageInputs) -> SpikeInput | None:
    """The spiking network's extra input (None on calcium): bin width and each unit's
    log mean count per bin over its session's training windows."""
    if not _on_spikes(inputs):
        return None
    mean, _ = unit_moments(_train_windows(inputs))
    return SpikeInput(session_bin_size(inputs), np.log(np.maximum(mean, MIN_MEAN_COUNT)))


def _normalised_windows(
    inputs: StageInputs, scaler: UnitScaler, sessions: Sequence[str], split: str
) -> np.ndarray:
    """Normalised windows [W, T, N_max] of some sessions; NaN pads smaller sessions."""
    dataset = WindowDataset(inputs.session_paths, inputs.splits, split, sessions)
    if len(dataset) == 0:
        raise ValueError(f"no {split!r} windows in sessions {list(sessions)}")
    bin_size = session_bin_size(inputs) if _on_spikes(inputs) else None
    chunks = []
    for batch in _batches(dataset):
        activity = batch["activity"]
        if bin_size is not None:
            activity = torch.from_numpy(spike_trace(activity.numpy(), bin_size))
        x = scaler.normalize(activity, batch["unit"]).numpy()
        x[~np.broadcast_to(batch["neuron_mask"].numpy()[:, None, :], x.shape)] = np.nan
        chunks.append(x)
    n_max = max(c.shape[2] for c in chunks)
    padded = [np.pad(c, ((0, 0), (0, 0), (0, n_max - c.shape[2])), constant_values=np.nan)
              for c in chunks]  # fmt: skip
    return np.concatenate(padded)


# --- tokenizer stage ------------------------------------------------------------------


def train_tokenizer(inputs: StageInputs, out_path: Path, report_path: Path) -> dict[str, Any]:
    """Fit the dataset's tokenizer; write its checkpoint and a JSON report; return the report.

    Report layout: ``{"config", "main": {"valid": m, "heldout": m}, "vocab_sweep":
    {"<K>": {"valid": m}}, "alternative": {"quantizer", "vocab_size", "valid": m}}`` with
    ``m`` = :func:`neurossl.models.tokenizer.tokenizer_report` metrics. "valid" is the
    pretraining sessions' validation windows (frames the tokenizer never fitted),
    "heldout" the held-out sessions' training windows (animals it never saw).
    """
    values = _with_overrides(inputs.hparams, _on_spikes(inputs))
    hp = check("tokenizer", TokenizerHParams, values).model_dump()
    device = resolve_device(inputs.device)
    seed_everything(inputs.seed)
    scaler = unit_statistics(inputs)
    pre, held = inputs.splits.pretrain_sessions, inputs.splits.heldout_sessions
    train_x = _normalised_windows(inputs, scaler, pre, "train")
    valid_x = _normalised_windows(inputs, scaler, pre, "valid")
    held_x = _normalised_windows(inputs, scaler, held, "train") if held else None
    config = TokenizerConfig(**{k: v for k, v in hp.items() if k in _TOKENIZER_MODEL_KEYS})

    def fit(cfg: TokenizerConfig, steps: int) -> Tokenizer:
        fit_cfg = FitConfig(
            steps=steps,
            batch_size=int(hp["batch_size"]),
            lr=float(hp["lr"]),
            tau_start=float(hp["tau_start"]),
            tau_end=float(hp["tau_end"]),
            seed=inputs.seed,
        )
        return fit_tokenizer(train_x, cfg, fit_cfg, device)

    tokenizer = fit(config, int(hp["steps"]))
    report: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "main": {"valid": tokenizer_report(tokenizer, valid_x)},
    }
    if held_x is not None:
        report["main"]["heldout"] = tokenizer_report(tokenizer, held_x)
    sweep_steps = hp["sweep_steps"] or hp["steps"]
    report["vocab_sweep"] = {}
    for size in hp["vocab_sweep"]:
        if int(size) == config.vocab_size:
            report["vocab_sweep"][str(size)] = report["main"]
            continue
        other = fit(dataclasses.replace(config, vocab_size=int(size)), sweep_steps)
        report["vocab_sweep"][str(size)] = {"valid": tokenizer_report(other, valid_x)}
    alternative = hp["alternative_quantizer"]
    if alternative != "none":
        if alternative == config.quantizer:
            raise ValueError(f"alternative_quantizer equals the main quantizer {alternative!r}")
        other = fit(dataclasses.replace(config, quantizer=alternative), sweep_steps)
        report["alternative"] = {
            "quantizer": alternative,
            "vocab_size": config.vocab_size,
            "valid": tokenizer_report(other, valid_x),
        }
    save_tokenizer(tokenizer, out_path, report)
    write_json(report_path, report)
    return report


# --- the method -----------------------------------------------------------------------


def _tokenizer_for(hp: dict[str, Any], device: str) -> Tokenizer:
    if hp["tokenizer_path"] is None:
        raise ValueError("hparams lack 'tokenizer_path' (the workflow passes the tokenizer)")
    return load_tokenizer(hp["tokenizer_path"], device)


def _backbone_config(inputs: StageInputs, hp: dict[str, Any], tokenizer: Tokenizer,
                     n_units: int, n_sessions: int) -> DualAxisConfig:  # fmt: skip
    shape = preset(inputs.size)
    shape.update({k: hp[k] for k in _BACKBONE_KEYS if hp[k] is not None})
    value_patch = tokenizer.patch if hp["value_input"] else 0
    return DualAxisConfig(vocab_size=tokenizer.vocab_size, n_units=n_units, n_sessions=n_sessions,
                          value_patch=value_patch, **shape)  # fmt: skip


def _train_config(hp: dict[str, Any], steps: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(
        max_steps=int(steps),
        lr=float(lr),
        weight_decay=float(hp["weight_decay"]),
        warmup_steps=min(int(hp["warmup_steps"]), max(0, int(steps) - 1)),
        batch_size=int(hp["batch_size"]),
        eval_every=min(int(hp["eval_every"]), int(steps)),
        checkpoint_every=min(int(hp["eval_every"]), int(steps)),
        patience=int(hp["patience"]),
        seed=seed,
        trainable=lambda name: not name.startswith("tokenizer."),
    )


def _loaders(inputs: StageInputs, sessions: Sequence[str], batch_size: int, seed: int,
             neuron_ids: dict[str, list[str]] | None = None):  # fmt: skip
    """Shuffled train and ordered valid loaders; ``neuron_ids`` None reads every neuron."""
    paths, splits = inputs.session_paths, inputs.splits
    train_set = WindowDataset(paths, splits, "train", sessions, neuron_ids)
    valid_set = WindowDataset(paths, splits, "valid", sessions, neuron_ids)
    train_loader = make_loader(train_set, batch_size, shuffle=True, seed=seed, by_session=False)
    valid_loader = None
    if len(valid_set):
        valid_loader = make_loader(valid_set, batch_size, shuffle=False, seed=seed,
                                   by_session=False)  # fmt: skip
    return train_set, train_loader, valid_loader


def _head_specs(inputs: StageInputs, dataset: WindowDataset, tasks: Sequence[str]) -> tuple:
    """One head per decoding task; classes and behaviour scale from the training windows."""
    items = [dataset[i] for i in range(len(dataset))]
    specs = []
    for task in tasks:
        if task == "forecasting" or task in SPIKING_QUERY_TASKS:
            continue
        if task.startswith(BEHAVIOR_PREFIX):
            variable = task[len(BEHAVIOR_PREFIX) :]
            column = _behavior_column(dataset, variable)
            values = np.concatenate([it["behavior"][:, column] for it in items])
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise ValueError(f"{task}: no finite '{variable}' in the training windows")
            specs.append(HeadSpec(task, behavior_column=column, behavior_mean=float(values.mean()),
                                  behavior_std=float(max(values.std(), 1e-6))))  # fmt: skip
            continue
        key = find_label_key(task, items[0])
        labels = [it[key] for it in items]
        classes = tuple(float(c) for c in np.unique(np.asarray(labels, dtype=np.float64))
                        if np.isfinite(c))  # fmt: skip
        specs.append(HeadSpec(task, label_key=key, classes=classes))
    return tuple(specs)


def _behavior_column(dataset: WindowDataset, variable: str) -> int:
    columns = set()
    for session in dataset.sessions:
        names = dataset.behavior_names(session)
        if variable not in names:
            raise ValueError(f"session {session!r} has no behaviour '{variable}' (has {names})")
        columns.add(names.index(variable))
    if len(columns) != 1:
        raise ValueError(f"behaviour '{variable}' sits in different columns across sessions")
    return columns.pop()


class CalmMethod:
    #: Either modality: the Session files' modality picks the input and the tasks' scoring.
    modality = "any"
    finetune_only_hparams = finetune_only_keys(CalmHParams)

    #: The methods this class serves (a subclass on the same network serves its own).
    method_names: tuple[str, ...] = METHOD_NAMES

    def __init__(self, name: str) -> None:
        if name not in self.method_names:
            family = type(self).__module__.rsplit(".", 1)[-1]
            raise ValueError(f"{family} has no method {name!r}; expected {self.method_names}")
        self.name = name
        self.pretrains = catalog.method(name).pretrains

    def supported_tasks(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(
            t
            for t in tasks
            if t in ("forecasting", "choice")
            or t in SPIKING_QUERY_TASKS
            or t.startswith(BEHAVIOR_PREFIX)
            or t.startswith(STIMULUS_PREFIX)
        )

    def adapt_loss(self, hp: dict[str, Any], spikes: bool):
        """Phase (A)'s loss: CalM's next-code loss, plus on spikes the hidden-token rate
        loss that trains the read-out every spiking query is answered with."""
        loss = make_pretrain_loss(float(hp["patch_weight"]))
        if not spikes:
            return loss
        return add_losses(loss, make_query_loss(float(hp["hide_ratio"]), float(hp["query_weight"])))

    def _network(self, inputs: StageInputs, hp: dict[str, Any], device: str,
                 heads: tuple = (), restoring: bool = False) -> CalmNetwork:  # fmt: skip
        """A fresh network; ``restoring`` skips the unit statistics a checkpoint holds."""
        tokenizer = _tokenizer_for(hp, device)
        vocab = DatasetVocab.from_paths(inputs.session_paths)
        n = len(vocab.unit_ids)
        scaler = UnitScaler(np.zeros(n), np.ones(n)) if restoring else unit_statistics(inputs)
        config = _backbone_config(inputs, hp, tokenizer, len(vocab.unit_ids),
                                  len(vocab.session_ids))  # fmt: skip
        config, spikes = self._configure(config), None
        if _on_spikes(inputs):
            # Spiking queries hide tokens through the backbone's masked input.
            config = dataclasses.replace(config, masked_input=True)
            spikes = (SpikeInput(session_bin_size(inputs), np.zeros(n)) if restoring
                      else spike_input(inputs))  # fmt: skip
        return CalmNetwork(tokenizer, config, scaler, heads, spikes)

    def _configure(self, config: DualAxisConfig) -> DualAxisConfig:
        """The method's backbone config (the shared-backbone objectives add their mask
        and prompt tables, :mod:`neurossl.methods.shared_backbone`)."""
        return config

    def pretrain(self, inputs: StageInputs, outputs: StageOutputs) -> None:
        if not self.pretrains:
            raise ValueError(f"{self.name} has no pretraining stage")
        hp = _hparams(inputs)
        device = resolve_device(inputs.device)
        seed_everything(inputs.seed)
        network = self._network(inputs, hp, device)
        sessions, neuron_ids = self._pretrain_neurons(inputs)
        _, train_loader, valid_loader = _loaders(
            inputs, sessions, int(hp["batch_size"]), inputs.seed, neuron_ids
        )
        train(
            network,
            self._pretrain_loss(hp),
            train_loader,
            valid_loader,
            _train_config(hp, hp["pretrain_steps"], hp["lr"], inputs.seed),
            outputs.checkpoint_dir,
            outputs.train_log,
            device,
        )
        save_model_file(outputs.model, "dual_axis", self.name, "pretrain",
                        {"state": network.cpu().state_dict()})  # fmt: skip

    def _pretrain_loss(self, hp: dict[str, Any]):
        """The pretraining objective (the one thing the shared-backbone methods change)."""
        return make_pretrain_loss(float(hp["patch_weight"]))

    def _pretrain_neurons(
        self, inputs: StageInputs
    ) -> tuple[list[str], dict[str, list[str]] | None]:
        """Pretraining sessions and the neurons read from each (None: every neuron)."""
        return list(inputs.splits.pretrain_sessions), None

    def finetune(self, inputs: StageInputs, pretrained: Path | None, outputs: StageOutputs) -> None:
        hp = _hparams(inputs)
        device = resolve_device(inputs.device)
        seed_everything(inputs.seed)
        held = inputs.splits.heldout_sessions
        if not held:
            raise ValueError("splits have no held-out sessions to fine-tune on")
        train_set, train_loader, valid_loader = _loaders(
            inputs, held, int(hp["batch_size"]), inputs.seed
        )
        tasks = self.supported_tasks(inputs.tasks)
        heads = _head_specs(inputs, train_set, tasks)
        network = self._network(inputs, hp, device, heads)
        if self.pretrains:
            if pretrained is None:
                raise ValueError(f"{self.name} fine-tuning needs the pretrained model")
            state = _load(pretrained, "pretrain")["state"]
            missing, unexpected = network.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("heads.") for k in missing):
                raise ValueError(
                    f"{pretrained}: does not match the model ({missing}, {unexpected})"
                )
        checkpoints = Path(outputs.checkpoint_dir)
        adapt_log, heads_log = checkpoints / "adapt_log.csv", checkpoints / "heads_log.csv"
        train(network, self.adapt_loss(hp, _on_spikes(inputs)), train_loader, valid_loader,
              _train_config(hp, hp["adapt_steps"], hp["finetune_lr"], inputs.seed),
              checkpoints / "adapt", adapt_log, device)  # fmt: skip
        if _on_spikes(inputs):
            probe_rates(network, _to(_batches(train_set), device), int(hp["probe_steps"]),
                        float(hp["probe_lr"]), float(hp["probe_weight_decay"]),
                        float(hp["hide_ratio"]))  # fmt: skip
        adapted = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        logs = [("adapt", adapt_log)]
        if heads:
            probe_heads(network, _to(_batches(train_set), device), int(hp["probe_steps"]),
                        float(hp["probe_lr"]), float(hp["probe_weight_decay"]))  # fmt: skip
            train(network, make_finetune_loss(float(hp["next_token_weight"]),
                                              float(hp["patch_weight"])), train_loader,
                  valid_loader,
                  _train_config(hp, hp["head_steps"], hp["finetune_lr"], inputs.seed + 1),
                  checkpoints / "heads", heads_log, device)  # fmt: skip
            logs.append(("heads", heads_log))
        publish(logs, Path(outputs.train_log))
        save_model_file(outputs.model, "dual_axis", self.name, "finetune", {
            "heads": [dataclasses.asdict(h) for h in heads],
            "adapted": adapted,
            "state": network.cpu().state_dict(),
        })  # fmt: skip

    def evaluate(self, inputs: StageInputs, finetuned: Path | None) -> Evaluation:
        if finetuned is None:
            raise ValueError(f"{self.name} evaluation needs the fine-tuned model")
        hp = _hparams(inputs)
        device = resolve_device(inputs.device)
        seed_everything(inputs.seed)
        payload = _load(finetuned, "finetune")
        heads = tuple(HeadSpec(**{**h, "classes": tuple(h["classes"])}) for h in payload["heads"])
        adapted = self._network(inputs, hp, device, heads, restoring=True)
        adapted.load_state_dict(payload["adapted"])
        tuned = self._network(inputs, hp, device, heads, restoring=True)
        tuned.load_state_dict(payload["state"])
        adapted.to(device).eval()
        tuned.to(device).eval()
        evaluation = Evaluation()
        tasks = self.supported_tasks(inputs.tasks)
        spikes = _on_spikes(inputs)
        for session in inputs.splits.heldout_sessions:
            windows = WindowDataset(
                inputs.session_paths, inputs.splits, inputs.eval_split, [session]
            )
            test = _to(_batches(windows), device)
            if not test:
                continue
            with autocast(device):
                if spikes:
                    for task in (t for t in tasks if t in SPIKING_QUERY_TASKS):
                        _evaluate_queries(inputs, adapted, test, session, task, evaluation)
                elif "forecasting" in tasks:
                    _evaluate_forecasting(inputs, hp, adapted, test, session, evaluation)
                if heads:
                    train_b = _to(_batches(WindowDataset(inputs.session_paths, inputs.splits,
                                                         "train", [session])), device)  # fmt: skip
                    _evaluate_decoding(inputs, adapted, tuned, train_b, test, session,
                                       evaluation)  # fmt: skip
        return evaluation


def make_method(name: str) -> CalmMethod:
    return CalmMethod(name)


# --- evaluation -------------------------------------------------------------------------


def _to(batches: list[dict[str, torch.Tensor]], device: str) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


def _evaluate_forecasting(
    inputs: StageInputs,
    hp: dict[str, Any],
    network: CalmNetwork,
    test: list[dict[str, torch.Tensor]],
    session: str,
    evaluation: Evaluation,
) -> None:
    patch = network.tokenizer.patch
    context, horizon = int(hp["context"]), int(hp["horizon"])
    if context % patch or horizon % patch:
        raise ValueError(
            f"hparams context {context} and horizon {horizon} must be multiples of the "
            f"tokenizer patch {patch} frames"
        )
    preds: dict[str, list[np.ndarray]] = {}
    futures = []
    for batch in test:
        n = int(batch["neuron_mask"][0].sum())
        past, future = forecast_windows(batch["activity"].cpu().numpy()[:, :, :n], context,
                                        horizon)  # fmt: skip
        ctx = dict(batch, activity=torch.from_numpy(np.ascontiguousarray(past)).to(
            batch["activity"].device))  # fmt: skip
        ctx["unit"], ctx["neuron_mask"] = batch["unit"][:, :n], batch["neuron_mask"][:, :n]
        for mode in dict.fromkeys((hp["forecast_mode"], "greedy")):
            out = forecast(network, ctx, horizon // patch, mode, inputs.seed, int(hp["samples"]),
                           hp["feedback"])  # fmt: skip
            preds.setdefault(mode, []).append(out.cpu().numpy())
        futures.append(future)
    target = np.concatenate(futures)
    for mode, chunks in preds.items():
        pred = np.concatenate(chunks)
        # The scored mode is the task's prediction (neurossl.eval.records); greedy
        # rollouts are kept beside it for comparison.
        scored = mode == hp["forecast_mode"]
        evaluation.arrays[f"forecasting/{session}/{'' if scored else mode + '_'}pred"] = pred
        if scored:
            evaluation.rows.extend(
                make_rows(inputs, session, "forecasting", horizon_metrics(pred, target))
            )
    evaluation.arrays[f"forecasting/{session}/target"] = target


def _evaluate_queries(
    inputs: StageInputs,
    network: CalmNetwork,
    test: list[dict[str, torch.Tensor]],
    session: str,
    task: str,
    evaluation: Evaluation,
) -> None:
    """One spiking task on one session's test windows, scored like every spiking method.

    Each query of :func:`~neurossl.eval.queries.spiking_queries` hides tokens
    (:func:`~neurossl.objectives.calm_spikes.query_hide`), and the query read-out's rates
    at its targets are scored by :func:`~neurossl.eval.scoring.score_queries`.
    """
    counts = np.concatenate([b["activity"].float().cpu().numpy() for b in test])
    n_bins = counts.shape[1]
    neurons = read_neurons(inputs.session_paths[session])
    held = set(map(str, inputs.splits.neuron_group(SPIKES, session, "held_out")))
    held_out = np.array([str(i) in held for i in neurons["id"]])
    regions = neurons["region"].astype(str).to_numpy()
    queries = spiking_queries(task, regions, held_out, n_bins, inputs.splits.seed)
    if not queries:
        return  # the session cannot pose this task (e.g. one region)
    patch = network.tokenizer.patch
    predictions = []
    for query in queries:
        hide_np = query_hide(query.visible, patch)
        pad = hide_np.shape[0] * patch - n_bins
        chunks = []
        for batch in test:
            activity = torch.nn.functional.pad(batch["activity"], (0, 0, 0, pad))
            hide = torch.from_numpy(hide_np).to(activity.device)
            hide = hide[None].expand(len(activity), -1, -1) & batch["neuron_mask"][:, None, :]
            rates = query_counts(network, dict(batch, activity=activity), hide)
            chunks.append(rates[:, :n_bins].float().cpu().numpy())
        predictions.append(np.concatenate(chunks).astype(np.float64))
    values, pred = score_queries(queries, predictions, counts, SPIKES)
    evaluation.rows.extend(make_rows(inputs, session, task, values))
    evaluation.arrays[f"{task}/{session}/pred"] = pred.astype(np.float32)
    evaluation.arrays[f"{task}/{session}/target"] = counts


def _states(network: CalmNetwork, batches: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """Hidden states [W, S, N, D] of one session's windows (real neurons only)."""
    chunks = []
    with torch.no_grad():
        for batch in batches:
            n = int(batch["neuron_mask"][0].sum())
            chunks.append(network(batch)["hidden"][:, :, :n].float().cpu().numpy())
    return np.concatenate(chunks)


def _frozen_features(train: np.ndarray, test: np.ndarray, patch: int) -> dict[str, tuple]:
    """Probe inputs of the frozen states [W, S, N, D]: per neuron, the ``HEAD_RANK``
    leading principal components of the states (fitted on the train windows).

    Per neuron, like the heads (:class:`neurossl.objectives.calm.UnitReadout`): the
    average over neurons loses which neurons respond. Compressed, because N x D
    features (1.5 k) make the shared CV decoders cost ~30 s per behaviour probe.
    Returns ``{"window": (train [W, N*k], test), "frame": (train [W, S*P, N*k], test)}``.
    """
    d = train.shape[-1]
    flat = train.reshape(-1, d)
    centre = flat.mean(0)
    basis = np.linalg.svd(flat - centre, full_matrices=False)[2][:HEAD_RANK].T  # [D, k]
    out: dict[str, list[np.ndarray]] = {"window": [], "frame": []}
    for states in (train, test):
        z = (states - centre) @ basis  # [W, S, N, k]
        out["window"].append(z.mean(1).reshape(len(z), -1))
        out["frame"].append(np.repeat(z.reshape(*z.shape[:2], -1), patch, axis=1))
    return {key: tuple(pair) for key, pair in out.items()}


def _labels(batches: list[dict[str, torch.Tensor]], key: str) -> np.ndarray:
    return np.concatenate([b[key].cpu().numpy() for b in batches])


def _behavior(batches: list[dict[str, torch.Tensor]], column: int, frames: int) -> np.ndarray:
    return np.concatenate([b["behavior"][:, :frames, column].cpu().numpy() for b in batches])


def _evaluate_decoding(
    inputs: StageInputs,
    adapted: CalmNetwork,
    tuned: CalmNetwork,
    train_b: list[dict[str, torch.Tensor]],
    test: list[dict[str, torch.Tensor]],
    session: str,
    evaluation: Evaluation,
) -> None:
    """Fine-tuned heads of model (B), and linear probes of the frozen model (A) scored as
    ``frozen_<metric>`` rows of the same task."""
    probe = _frozen_features(_states(adapted, train_b), _states(adapted, test),
                             adapted.tokenizer.patch)  # fmt: skip
    outputs: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for batch in test:
            hidden = tuned(batch)["hidden"]
            heads = head_outputs(tuned, hidden, batch["unit"], batch["neuron_mask"])
            for task, value in heads.items():
                outputs.setdefault(task, []).append(value.float().cpu().numpy())
    trials = eval_trials(inputs, session)
    for spec in tuned.head_specs:
        pred = np.concatenate(outputs[spec.task])
        proba = classes = shape = None
        if spec.label_key:
            y_test = _labels(test, spec.label_key)
            classes = np.asarray(spec.classes)
            y_pred, proba = classes[pred.argmax(1)], softmax(pred, axis=1)
            values = {"bacc": balanced_accuracy(y_test, y_pred), "acc": accuracy(y_test, y_pred)}
            train_x, test_x = probe["window"]
            frozen = decode_discrete(train_x, _labels(train_b, spec.label_key), test_x, y_test,
                                     inputs.seed)  # fmt: skip
        else:
            frames = pred.shape[1]
            y_test = _behavior(test, spec.behavior_column, frames)
            y_pred = pred * spec.behavior_std + spec.behavior_mean
            values = {"r2": r2(y_pred.reshape(-1), y_test.reshape(-1))}
            y_train = _behavior(train_b, spec.behavior_column, frames)
            train_x, test_x = (x.reshape(-1, x.shape[-1]) for x in probe["frame"])
            frozen = decode_continuous(train_x, y_train.reshape(-1), test_x, y_test.reshape(-1),
                                       inputs.seed)  # fmt: skip
            shape = y_test.shape
        put_decoding(evaluation, spec.task, session, y_pred, y_test, trials, proba, classes)
        put_decoded(evaluation, spec.task, session, frozen, trials, frozen=True, shape=shape)
        values.update({frozen_metric(metric): value for metric, value in frozen.values.items()})
        evaluation.rows.extend(make_rows(inputs, session, spec.task, values))


def _load(path: Path, stage: str) -> dict[str, Any]:
    # Not weights_only: the file holds the heads' dataclass fields next to the tensors.
    return load_model_file(path, "dual_axis", stage, weights_only=False)
