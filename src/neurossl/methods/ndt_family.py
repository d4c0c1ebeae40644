"""The NDT backbone family: ``mtm``, ``ndt`` (temporal-masking baseline), ``scratch_ndt``.

All three share the model (:mod:`neurossl.models.ndt`), the engine and the evaluation;
they differ only in the objective and whether they pretrain, so a difference in the
report is the objective's (or pretraining's) doing:

- ``mtm``: pretrain and fine-tune with multi-task masking (one of neuron / causal /
  intra-region / inter-region per batch, with its prompt token); evaluate each task
  with the prompt of its matching scheme.
- ``ndt``: the same with temporal masking only and no prompt; one mode for all tasks.
- ``scratch_ndt``: no pretraining; fine-tuning and evaluation exactly as ``mtm``.

Stages:

- ``pretrain``: pretraining sessions, train windows; valid windows pick the best step.
- ``finetune``: held-out sessions get new stitchers and session tokens. Phase 1 trains
  only those (``stitch_steps``), phase 2 everything (``max_steps``), both with the
  family's objective on the held-out sessions' train windows (valid for selection).
  Phase 3 (``decode_steps``, only when decoding tasks are configured) fine-tunes a
  *copy* of that model end to end with one linear head per decoding task
  (:mod:`neurossl.methods.task_heads`: cross-entropy on the time-averaged latent for
  window labels, MSE per bin for behaviour). A copy, so the masked-modelling tasks are
  still scored on the weights the objective produced, not on weights pulled towards
  the labels.
- ``evaluate``: held-out sessions' test windows. Spiking tasks: every query of
  :func:`neurossl.eval.queries.spiking_queries` is answered by zeroing the entries it
  hides (as the training masks do) and reading the predicted rates at its targets,
  scored by :func:`neurossl.eval.scoring.score_queries`. Decoding tasks (``choice``,
  ``stimulus_<var>``, ``behavior_<var>``) are scored twice: by the fine-tuned heads of
  phase 3 (``bacc``/``acc``/``r2``), and by linear probes of the masked-modelling
  model's frozen representation (``frozen_bacc``/``frozen_acc``/``frozen_r2``), fitted
  here on the train windows and scored on the test windows: cross-validated logistic
  regression on the time-averaged latent for labels, ridge from the per-bin latent for
  behaviour. The same two readings as CalM's, so the report compares them directly.

``StageInputs.hparams`` keys (all optional; unknown keys are an error):

- model: ``preset`` (``tiny`` | ``published``; default: ``StageInputs.size``, which
  must name a preset) and overrides ``d_model``, ``n_layers``, ``n_heads``,
  ``d_ff``, ``dropout``, ``attn_dropout``, ``max_bins``.
- training: ``pretrain_steps`` (1500), ``max_steps`` (200: full fine-tuning), ``lr``
  (3e-3; with the calibrated read-out init of
  :meth:`neurossl.models.ndt.NDT.init_rates` it beat 1e-3 and 1e-2 on validation
  windows), ``weight_decay`` (0.01), ``warmup_steps`` (10), ``batch_size`` (16:
  pretraining and evaluation), ``finetune_batch_size`` (32: both fine-tuning phases),
  ``eval_every`` (25), ``checkpoint_every`` (50), ``patience`` (0 = off), ``grad_clip`` (1.0),
  ``num_workers`` (0), ``compile`` (False), ``progress`` (True: a bar when stderr is a terminal).
- fine-tuning phase 1: ``stitch_steps`` (120), ``stitch_lr`` (3e-3); phase 3:
  ``decode_steps`` (100; 0 skips the fine-tuned heads), ``decode_lr`` (1e-3: the
  pretrained backbone is adapted, not retrained).

Why fine-tuning has its own batch size and a long stitcher phase: held-out sessions are
few (two on the default data) and MtM draws one masking scheme per batch, so the
fine-tuned scores swing with the scheme draws. The embedded default's values come from
:mod:`neurossl.selection`: stitcher steps {40, 120} x fine-tuning batch {16, 32}, each
method scored on its own *validation* windows (co-smoothing and inter-region bits/spike)
of training seeds 3 and 4, which no report uses. Every method chose 120 stitcher steps
(new read-in/out fitted to a frozen backbone before it is unfrozen); MtM and NDT chose
batch 16 and scratch batch 32 (``config/protocol.yaml``; the table is in
``docs/hparam_selection.md``).
- masking: ``neuron_ratio`` (0.3), ``causal_fraction`` (0.6), ``temporal_ratio`` (0.3),
  ``intra_ratio`` (0.5).
- calcium: ``context`` (32) and ``horizon`` (16) frames of the forecasting windows (the
  other calcium methods' defaults); ``calcium`` (a mapping of the keys above that apply
  on calcium recordings only, e.g. a shorter demo budget).

The defaults finish a stage on the default synthetic dataset in a few seconds on CPU.

Calcium (dF/F): the family runs on either modality, the Session files' modality picks
the path (:func:`session_modality`); the spiking path is unchanged. What changes to fit
MtM to imaging, and why:

- Loss and scale: MSE on the masked entries of per-neuron z-scored dF/F (Gaussian NLL
  with unit variance) instead of the Poisson NLL; the z-scoring moments come from each
  stage's training windows and travel in the model file (``unit_norm``); predictions are
  mapped back to dF/F before scoring. Argued in :mod:`neurossl.objectives.mtm`.
- Read-out initialisation: spiking read-outs start at log mean rates (the bits/spike
  null); on z-scored traces the mean is 0, which small read-out weights already give,
  so ``init_rates`` is not used.
- Masking schemes and prompts are MtM's four (neuron, causal, intra-, inter-region),
  with regions from the Session's ``neurons.region`` (the imaging plane's visual area
  on Allen data). Imaging sessions often record one area: the region schemes then drop
  out for that session (as on a one-region probe), and neuron and causal masking remain.
  Time bins are imaging frames (one token per frame), as MtM's tokens are time bins.
- Tasks: forecasting and decoding, as every calcium method. Forecasting is scored on
  the windows every calcium method uses (first ``context`` frames seen, next ``horizon``
  frames predicted, :func:`neurossl.eval.queries.forecast_windows`) with the per-horizon
  metrics of :func:`neurossl.eval.metrics.horizon_metrics`; the prediction is the one
  read-out :func:`neurossl.objectives.mtm.forecast_readout` (MtM: the causal prompt and
  causal attention over the end of the context plus ``horizon`` masked frames placed
  where the causal training mask begins, one pass). Decoding
  is the spiking path's: fine-tuned heads (phase 3) and frozen linear probes on the
  latents of z-scored inputs. Other activity tasks (co-smoothing, inter/intra-region)
  use the spiking path's queries, scored with the calcium metrics (R^2, MSE, MAE).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurossl import catalog
from neurossl.contract import Evaluation, StageInputs, StageOutputs, session_modality
from neurossl.data.loader import DatasetVocab, WindowDataset, WindowLoader, make_loader
from neurossl.data.session import read_neurons
from neurossl.device import autocast, resolve_device
from neurossl.eval.decoding import decode_continuous, decode_discrete
from neurossl.eval.metrics import horizon_metrics
from neurossl.eval.queries import SPIKING_QUERY_TASKS, forecast_windows, spiking_queries
from neurossl.eval.records import eval_trials, put_decoded
from neurossl.eval.rows import make_rows
from neurossl.eval.scoring import score_queries
from neurossl.hparams import check, finetune_only_keys
from neurossl.methods.hparam_models import NDTHParams
from neurossl.methods.task_heads import TaskHead, fit_task_heads, score_heads, task_loss_fn
from neurossl.models.ndt import (
    NDT,
    PRESETS,
    NDTConfig,
    build_from_description,
    make_config,
    session_parameter_filter,
)
from neurossl.names import (
    BEHAVIOR_PREFIX,
    frozen_metric,
    is_decoding_task,
    label_columns,
)
from neurossl.objectives.mtm import (
    PROMPT_INDEX,
    SCHEMES,
    TASK_SCHEME,
    TEMPORAL,
    MaskedModelingLoss,
    MaskRatios,
    UnitStandardizer,
    causal_start,
    forecast_readout,
    single_session,
)
from neurossl.train.engine import TrainConfig, train
from neurossl.train.model_file import load_model_file, save_model_file
from neurossl.train.runtime import seed_everything
from neurossl.train_logs import LIVE_LOG, publish

FAMILY = ("mtm", "ndt", "scratch_ndt")
CALCIUM = "calcium"

_MODEL_KEYS = ("d_model", "n_layers", "n_heads", "d_ff", "dropout", "attn_dropout", "max_bins")


def read_hparams(inputs: StageInputs) -> dict[str, Any]:
    """The stage's hparams checked by :class:`NDTHParams` (defaults filled in).

    The ``calcium`` key holds overrides of the other keys that apply on calcium
    recordings only (one method name serves both modalities, with budgets of their own).
    """
    values = dict(inputs.hparams)
    overrides = values.pop("calcium", None) or {}
    if session_modality(inputs) == CALCIUM:
        values |= overrides
    merged = check(inputs.method, NDTHParams, values).model_dump()
    if merged["preset"] is None:
        # A size the backbone does not have is refused: training a tiny model under a
        # real-size name would mislabel every number of the run.
        if inputs.size not in PRESETS:
            raise ValueError(
                f"{inputs.method}: size {inputs.size!r} is not an NDT preset "
                f"{sorted(PRESETS)}; set sizes accordingly or hparams.{inputs.method}.preset"
            )
        merged["preset"] = inputs.size
    return merged


#: Checkpoint sub-folder of each engine run (``None``: full fine-tuning).
_PHASE_DIR = {"stitch": "stitch", "decode": "decode", "pretrain": "full", None: "full"}


class NDTFamily:
    """One of ``mtm``, ``ndt``, ``scratch_ndt`` (see the module docstring)."""

    #: Either modality: the Session files' modality picks the loss and the tasks' scoring.
    modality = "any"
    finetune_only_hparams = finetune_only_keys(NDTHParams)

    def __init__(self, name: str) -> None:
        if name not in FAMILY:
            raise ValueError(f"ndt_family implements {FAMILY}, not {name!r}")
        self.name = name
        self.pretrains = catalog.method(name).pretrains
        self.prompts = name != "ndt"
        self.schemes = SCHEMES if self.prompts else (TEMPORAL,)

    def supported_tasks(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(t for t in tasks if t in SPIKING_QUERY_TASKS or is_decoding_task(t))

    # --- stages ---

    def pretrain(self, inputs: StageInputs, outputs: StageOutputs) -> None:
        if not self.pretrains:
            raise ValueError(f"{self.name} has no pretraining stage")
        hp = read_hparams(inputs)
        seed_everything(inputs.seed)  # the initial weights are part of the run
        sessions = inputs.splits.pretrain_sessions
        train_data = self._dataset(inputs, "train", sessions)
        model = NDT(self._model_config(hp), _neuron_counts(train_data))
        scaler = _standardizer(inputs, train_data)
        if scaler is None:
            for session, mean in _mean_counts(train_data).items():
                model.init_rates(session, mean)
        self._train(model, inputs, hp, train_data, sessions, outputs, "pretrain", scaler=scaler)
        _save_model(model, outputs, self.name, "pretrain", scaler=scaler)

    def finetune(self, inputs: StageInputs, pretrained: Path | None, outputs: StageOutputs) -> None:
        hp = read_hparams(inputs)
        seed_everything(inputs.seed)  # new stitchers' initial weights are part of the run
        sessions = inputs.splits.heldout_sessions
        train_data = self._dataset(inputs, "train", sessions)
        if self.pretrains:
            if pretrained is None:
                raise ValueError(f"{self.name} fine-tunes a pretrained model; got none")
            model = load_model(pretrained)
        else:
            model = NDT(self._model_config(hp), {})
        scaler = _standardizer(inputs, train_data)
        means = _mean_counts(train_data) if scaler is None else {}
        for session, n in _neuron_counts(train_data).items():
            if session not in model.sessions:
                model.add_session(session, n, means.get(session))
        self._train(model, inputs, hp, train_data, sessions, outputs, "stitch", scaler=scaler)
        self._train(model, inputs, hp, train_data, sessions, outputs, None, scaler=scaler)
        decoder = self._fit_decoder(model, inputs, hp, train_data, sessions, outputs, scaler)
        base = outputs.model.parent if outputs.model is not None else Path(".")
        checkpoints = outputs.checkpoint_dir or base / "checkpoints"
        phases = ["stitch", "full"] + (["decode"] if decoder is not None else [])
        publish([(p, checkpoints / p / LIVE_LOG) for p in phases],
                outputs.train_log or base / "train_log.csv")  # fmt: skip
        _save_model(model, outputs, self.name, "finetune", decoder, scaler)

    def evaluate(self, inputs: StageInputs, finetuned: Path | None) -> Evaluation:
        if finetuned is None:
            raise ValueError(f"{self.name} evaluates a fine-tuned model; got none")
        hp = read_hparams(inputs)
        device = resolve_device(inputs.device)
        payload = _read_payload(finetuned)
        model = _model_from(payload, finetuned).to(device).eval()
        scaler = _saved_scaler(payload, finetuned, session_modality(inputs))
        decoder = None
        if "decoder" in payload:
            session_ids = DatasetVocab.from_paths(inputs.session_paths).session_ids
            decoder = _decoder_from(payload, finetuned, session_ids, scaler).to(device).eval()
        evaluation = Evaluation()
        tasks = self.supported_tasks(inputs.tasks)
        head_tasks = [t for t in tasks if decoder is not None and t in decoder.task_heads]
        for session in inputs.splits.heldout_sessions:
            reader = _SessionReader(inputs, session, model, device, hp["batch_size"], scaler)
            for task in tasks:
                if task == "forecasting" and scaler is not None:
                    self._score_forecast(inputs, hp, reader, evaluation)
                elif task in SPIKING_QUERY_TASKS:
                    self._score_queries(inputs, reader, task, evaluation)
                else:
                    self._score_decoding(inputs, reader, task, evaluation)
            if head_tasks:
                self._score_heads(inputs, reader, decoder, head_tasks, evaluation)
        return evaluation

    # --- helpers ---

    def _model_config(self, hp: dict[str, Any]) -> NDTConfig:
        overrides = {k: hp[k] for k in _MODEL_KEYS if hp[k] is not None}
        return make_config(hp["preset"], n_prompts=len(SCHEMES) if self.prompts else 0, **overrides)

    def _dataset(self, inputs: StageInputs, split: str, sessions: Sequence[str]) -> WindowDataset:
        if not sessions:
            raise ValueError(f"splits of {inputs.dataset!r} list no sessions for this stage")
        return WindowDataset(inputs.session_paths, inputs.splits, split, sessions)

    def _train(
        self,
        model: nn.Module,
        inputs: StageInputs,
        hp: dict[str, Any],
        train_data: WindowDataset,
        sessions: Sequence[str],
        outputs: StageOutputs,
        phase: str | None,
        loss: Callable[[nn.Module, dict[str, torch.Tensor]], tuple] | None = None,
        scaler: UnitStandardizer | None = None,
    ) -> None:
        """One engine run: ``phase`` "pretrain", "stitch", "decode" or None (full
        fine-tuning); ``loss`` replaces the family's masking objective (phase "decode").
        ``scaler``: calcium's z-scoring (None on spikes)."""
        if outputs.model is None:
            raise ValueError(f"{self.name}: StageOutputs.model is required")
        base = outputs.model.parent
        checkpoints = outputs.checkpoint_dir or base / "checkpoints"
        log = outputs.train_log or base / "train_log.csv"
        checkpoints = checkpoints / _PHASE_DIR.get(phase, "full")
        if phase != "pretrain":  # finetune() publishes its phases' logs as one
            log = checkpoints / LIVE_LOG
        stitch = phase == "stitch"
        batch_size = hp["batch_size"] if phase == "pretrain" else hp["finetune_batch_size"]
        steps = {
            "stitch": hp["stitch_steps"],
            "pretrain": hp["pretrain_steps"],
            "decode": hp["decode_steps"],
        }.get(phase, hp["max_steps"])
        lr = {"stitch": hp["stitch_lr"], "decode": hp["decode_lr"]}.get(phase, hp["lr"])
        config = TrainConfig(
            max_steps=steps,
            lr=lr,
            weight_decay=hp["weight_decay"],
            warmup_steps=min(hp["warmup_steps"], steps),
            batch_size=batch_size,
            eval_every=hp["eval_every"],
            checkpoint_every=hp["checkpoint_every"],
            patience=hp["patience"],
            grad_clip=hp["grad_clip"],
            seed=inputs.seed,
            compile=hp["compile"],
            trainable=session_parameter_filter(sessions) if stitch else None,
            progress=hp["progress"],
        )
        loss = loss or MaskedModelingLoss(
            self.schemes,
            MaskRatios(
                hp["neuron_ratio"], hp["causal_fraction"], hp["temporal_ratio"], hp["intra_ratio"]
            ),
            self.prompts,
            train_data.vocab.session_ids,
            session_modality(inputs),
            scaler,
        )
        valid_data = WindowDataset(inputs.session_paths, inputs.splits, "valid", sessions)
        train(
            model,
            loss,
            make_loader(train_data, batch_size, True, inputs.seed, True, hp["num_workers"]),
            _optional_loader(valid_data, batch_size, inputs.seed),
            config,
            checkpoints,
            log,
            resolve_device(inputs.device),
        )

    def _fit_decoder(
        self,
        model: NDT,
        inputs: StageInputs,
        hp: dict[str, Any],
        train_data: WindowDataset,
        sessions: Sequence[str],
        outputs: StageOutputs,
        scaler: UnitStandardizer | None = None,
    ) -> DecodingNDT | None:
        """Phase 3: a copy of the fine-tuned model trained end to end with task heads."""
        tasks = [t for t in self.supported_tasks(inputs.tasks) if is_decoding_task(t)]
        if not tasks or hp["decode_steps"] < 1:
            return None
        heads = fit_task_heads(tasks, train_data)
        prompt, _ = self._mode(tasks[0])  # every decoding task reads the same mode
        decoder = DecodingNDT(
            copy.deepcopy(model), heads, prompt, train_data.vocab.session_ids, scaler
        )
        self._train(
            decoder, inputs, hp, train_data, sessions, outputs, "decode", task_loss_fn(heads)
        )
        return decoder

    def _score_heads(
        self,
        inputs: StageInputs,
        reader: _SessionReader,
        decoder: DecodingNDT,
        tasks: Sequence[str],
        evaluation: Evaluation,
    ) -> None:
        """Every fine-tuned head on one session's test windows, in one pass."""
        windows = reader.dataset(inputs.eval_split)
        batches = make_loader(windows, reader.batch_size, False, 0, True)
        heads = [decoder.task_heads[t] for t in tasks]
        score_heads(decoder, batches, heads, reader.device, 0, inputs, reader.session, evaluation)

    def _mode(self, task: str) -> tuple[int | None, bool]:
        """(prompt, causal) used to answer a task: the matching scheme for MtM."""
        if not self.prompts:
            return None, False
        scheme = TASK_SCHEME.get(task, "neuron")
        return PROMPT_INDEX[scheme], scheme == "causal"

    def _score_forecast(
        self,
        inputs: StageInputs,
        hp: dict[str, Any],
        reader: _SessionReader,
        evaluation: Evaluation,
    ) -> None:
        """Calcium forecasting on the calcium methods' windows, per horizon step."""
        activity = reader.activity(inputs.eval_split)
        past, future = forecast_windows(activity, hp["context"], hp["horizon"])
        prompt, causal = self._mode("forecasting")
        start = min(causal_start(activity.shape[1], hp["causal_fraction"]), past.shape[1])
        z = forecast_readout(
            reader.outputs, reader.scaler.apply(reader.session, past), hp["horizon"], start,
            prompt, causal,
        )  # fmt: skip
        pred = reader.scaler.invert(reader.session, z)
        values = horizon_metrics(pred, future)
        evaluation.rows.extend(make_rows(inputs, reader.session, "forecasting", values))
        evaluation.arrays[f"forecasting/{reader.session}/pred"] = pred.astype(np.float32)
        evaluation.arrays[f"forecasting/{reader.session}/target"] = future

    def _score_queries(
        self, inputs: StageInputs, reader: _SessionReader, task: str, evaluation: Evaluation
    ) -> None:
        activity = reader.activity(inputs.eval_split)
        queries = spiking_queries(
            task, reader.regions, reader.held_out, activity.shape[1], inputs.splits.seed
        )
        if not queries:
            return  # the session cannot pose this task (e.g. one region)
        prompt, causal = self._mode(task)
        predictions = []
        for query in queries:
            hidden = np.broadcast_to(~query.visible, activity.shape)
            predictions.append(reader.predict_masked(activity, hidden, prompt, causal))
        values, pred = score_queries(queries, predictions, activity, reader.modality)
        evaluation.rows.extend(make_rows(inputs, reader.session, task, values))
        evaluation.arrays[f"{task}/{reader.session}/pred"] = pred.astype(np.float32)
        evaluation.arrays[f"{task}/{reader.session}/target"] = activity

    def _score_decoding(
        self, inputs: StageInputs, reader: _SessionReader, task: str, evaluation: Evaluation
    ) -> None:
        prompt, causal = self._mode(task)
        train_z, test_z = (reader.latents(s, prompt, causal) for s in ("train", inputs.eval_split))
        if task.startswith(BEHAVIOR_PREFIX):
            variable = task[len(BEHAVIOR_PREFIX) :]
            train_y, test_y = (reader.behavior(s, variable) for s in ("train", inputs.eval_split))
            d = train_z.shape[-1]
            decoded = decode_continuous(
                train_z.reshape(-1, d), train_y.ravel(), test_z.reshape(-1, d), test_y.ravel(),
                inputs.seed,
            )  # fmt: skip
            trials, shape = eval_trials(inputs, reader.session), test_y.shape
        else:
            label = reader.label_column(task)
            (train_keep, train_y), (test_keep, test_y) = (
                reader.labels(s, label) for s in ("train", inputs.eval_split)
            )
            decoded = decode_discrete(
                train_z[train_keep].mean(1), train_y, test_z[test_keep].mean(1), test_y,
                inputs.seed,
            )  # fmt: skip
            trials, shape = eval_trials(inputs, reader.session)[test_keep], None
        frozen = {frozen_metric(metric): value for metric, value in decoded.values.items()}
        evaluation.rows.extend(make_rows(inputs, reader.session, task, frozen))
        put_decoded(evaluation, task, reader.session, decoded, trials, frozen=True, shape=shape)


class _SessionReader:
    """One held-out session's windows and the model's answers on them, read once each."""

    def __init__(
        self,
        inputs: StageInputs,
        session: str,
        model: NDT,
        device: str,
        batch_size: int,
        scaler: UnitStandardizer | None = None,
    ) -> None:
        self.inputs, self.session, self.model = inputs, session, model
        self.device, self.batch_size, self.scaler = device, batch_size, scaler
        self.modality = session_modality(inputs)
        neurons = read_neurons(inputs.session_paths[session])
        self._ids = [str(i) for i in neurons["id"]]
        self.regions = neurons["region"].astype(str).to_numpy()
        self._data: dict[str, WindowDataset] = {}
        self._activity: dict[str, np.ndarray] = {}

    @property
    def held_out(self) -> np.ndarray:
        """bool [N]: the splits' held-out neurons (read only by the tasks that need them)."""
        group = self.inputs.splits.neuron_group(self.modality, self.session, "held_out")
        held_out = set(map(str, group))
        return np.array([i in held_out for i in self._ids])

    def dataset(self, split: str) -> WindowDataset:
        if split not in self._data:
            self._data[split] = WindowDataset(
                self.inputs.session_paths, self.inputs.splits, split, [self.session]
            )
            if len(self._data[split]) == 0:
                raise ValueError(f"session {self.session!r} has no {split!r} windows")
        return self._data[split]

    def activity(self, split: str) -> np.ndarray:
        if split not in self._activity:
            data = self.dataset(split)
            self._activity[split] = np.stack([data[i]["activity"] for i in range(len(data))])
        return self._activity[split]

    def behavior(self, split: str, variable: str) -> np.ndarray:
        data = self.dataset(split)
        names = data.behavior_names(self.session)
        if variable not in names:
            raise KeyError(f"session {self.session!r} has no behaviour {variable!r}; has {names}")
        column = names.index(variable)
        return np.stack([data[i]["behavior"][:, column] for i in range(len(data))])

    def label_column(self, task: str) -> str:
        """Trial column of a label task: ``choice``; ``stimulus_<var>`` or else ``<var>``."""
        data = self.dataset("train")
        candidates = label_columns(task)
        for column in candidates:
            if f"label/{column}" in data[0]:
                return column
        raise KeyError(
            f"session {self.session!r}: task {task!r} needs a numeric trial column "
            f"named one of {candidates}"
        )

    def labels(self, split: str, label: str) -> tuple[np.ndarray, np.ndarray]:
        """(trial windows, their labels): continuous windows carry no label."""
        data = self.dataset(split)
        key = f"label/{label}"
        trials = self.inputs.splits.windows[self.session].select(split).trial
        keep = trials >= 0
        values = np.array([data[i][key] for i in np.flatnonzero(keep)])
        return keep, values

    def _run(self, x: np.ndarray, prompt: int | None, causal: bool, latent: bool) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, x.shape[0], self.batch_size):
                chunk = torch.from_numpy(x[start : start + self.batch_size]).to(self.device)
                with autocast(self.device):
                    if latent:
                        y = self.model.encode(chunk, self.session, prompt, causal)
                    else:
                        y = self.model(chunk, self.session, prompt, causal)
                out.append(y.float().cpu().numpy())
        return np.concatenate(out)

    def outputs(self, x: np.ndarray, prompt: int | None, causal: bool) -> np.ndarray:
        """The model's per-neuron outputs on model-scale input (see :meth:`NDT.forward`)."""
        return self._run(x, prompt, causal, latent=False).astype(np.float64)

    def predict_masked(
        self, activity: np.ndarray, hidden: np.ndarray, prompt: int | None, causal: bool
    ) -> np.ndarray:
        """Predictions in the data's units (expected counts or dF/F) with ``hidden`` zeroed
        on the model's scale, as the training masks zero them."""
        if self.scaler is None:
            masked = np.where(hidden, 0.0, activity).astype(np.float32)
            return np.exp(self.outputs(masked, prompt, causal))
        z = np.where(hidden, 0.0, self.scaler.apply(self.session, activity)).astype(np.float32)
        return self.scaler.invert(self.session, self.outputs(z, prompt, causal))

    def latents(self, split: str, prompt: int | None, causal: bool) -> np.ndarray:
        """Per-bin representation [W, T, d] of unmasked windows."""
        x = self.activity(split)
        if self.scaler is not None:
            x = self.scaler.apply(self.session, x)
        return self._run(x, prompt, causal, latent=True)


def _neuron_counts(data: WindowDataset) -> dict[str, int]:
    return {s: int(data.regions(s).size) for s in data.sessions}


def _mean_counts(data: WindowDataset) -> dict[str, torch.Tensor]:
    """Per-neuron mean count per bin of each session over the dataset's windows."""
    out = {}
    for session, indices in data.indices_by_session().items():
        if indices.size == 0:
            continue
        windows = [data[int(i)]["activity"] for i in indices]
        mean = np.concatenate(windows).astype(np.float64).mean(0)
        out[session] = torch.from_numpy(mean).float()
    return out


def _optional_loader(data: WindowDataset, batch_size: int, seed: int) -> WindowLoader | None:
    return make_loader(data, batch_size, False, seed, True) if len(data) else None


def _save_model(
    model: NDT,
    outputs: StageOutputs,
    method: str,
    stage: str,
    decoder: DecodingNDT | None = None,
    scaler: UnitStandardizer | None = None,
) -> None:
    payload: dict[str, Any] = {
        "description": model.describe(),
        "state_dict": _cpu_state(model),
    }
    if scaler is not None:
        payload["unit_norm"] = scaler.to_json()
    if decoder is not None:
        payload["decoder"] = {
            "prompt": decoder.prompt,
            "task_heads": [h.to_json() for h in decoder.task_heads.values()],
            "state_dict": _cpu_state(decoder),
        }
    save_model_file(outputs.model, "ndt", method, stage, payload)


def load_model(path: Path) -> NDT:
    """Rebuild an NDT saved by a stage of this family."""
    return _model_from(_read_payload(path), path)


def _read_payload(path: Path) -> dict[str, Any]:
    return load_model_file(path, "ndt")


def _model_from(payload: dict[str, Any], path: Path) -> NDT:
    try:
        model = build_from_description(payload["description"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: not an NDT-family model file ({err})") from err
    return model


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _standardizer(inputs: StageInputs, train_data: WindowDataset) -> UnitStandardizer | None:
    """Calcium's per-neuron z-scoring from the stage's training windows; None on spikes."""
    if session_modality(inputs) != CALCIUM:
        return None
    return UnitStandardizer.fit(train_data)


def _saved_scaler(payload: dict[str, Any], path: Path, modality: str) -> UnitStandardizer | None:
    if modality != CALCIUM:
        return None
    if "unit_norm" not in payload:
        raise ValueError(f"{path}: calcium NDT model file lacks 'unit_norm' (spiking model?)")
    return UnitStandardizer.from_json(payload["unit_norm"])


def _decoder_from(
    payload: dict[str, Any],
    path: Path,
    session_ids: Sequence[str],
    scaler: UnitStandardizer | None = None,
) -> DecodingNDT:
    """The fine-tuned decoding model saved beside the NDT (phase 3)."""
    saved = payload["decoder"]
    try:
        heads = [TaskHead.from_json(h) for h in saved["task_heads"]]
        backbone = build_from_description(payload["description"])
        decoder = DecodingNDT(backbone, heads, saved["prompt"], session_ids, scaler)
        decoder.load_state_dict(saved["state_dict"])
    except (KeyError, RuntimeError, TypeError) as err:
        raise ValueError(f"{path}: malformed fine-tuned decoder ({err})") from err
    return decoder


class DecodingNDT(nn.Module):
    """An NDT with one linear head per decoding task, for :func:`task_loss_fn` batches.

    Window labels read the time-averaged latent (one decision per trial), behaviour the
    latent of each bin. ``session_ids`` maps a batch's ``session`` index to the
    stitcher (the dataset vocabulary, the same for every stage of a dataset);
    ``scaler`` z-scores calcium batches as the backbone was trained (None on spikes).
    """

    def __init__(
        self,
        backbone: NDT,
        heads: Sequence[TaskHead],
        prompt: int | None,
        session_ids: Sequence[str],
        scaler: UnitStandardizer | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.scaler = scaler
        self.prompt = prompt
        self.session_ids = tuple(session_ids)
        self.task_heads = {h.name: h for h in heads}
        d = backbone.config.d_model
        self.heads = nn.ModuleDict({h.name: nn.Linear(d, h.n_out) for h in heads})

    def forward(self, batch: dict[str, torch.Tensor], names: Sequence[str]) -> dict:
        session, counts, _ = single_session(batch, self.session_ids)
        if self.scaler is not None:
            counts = self.scaler(session, counts)
        latent = self.backbone.encode(counts, session, self.prompt, causal=False)
        out = {}
        for name in names:
            if self.task_heads[name].classifies:
                out[name] = self.heads[name](latent.mean(1))
            else:
                out[name] = self.heads[name](latent).squeeze(-1)
        return out


def make_method(name: str) -> NDTFamily:
    """Registry factory (:mod:`neurossl.methods.registry`)."""
    return NDTFamily(name)
