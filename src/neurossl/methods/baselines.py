"""Simple baselines and the oracle behind the Method interface.

Every number of a pretrained method is read against these: a baseline that needs no
backbone bounds it from below, the oracle (ground truth of synthetic data) from above.
They never pretrain. ``finetune`` fits one model per held-out session and task on that
session's *train* windows; ``evaluate`` scores the *test* windows with the same query
definitions and metrics every method uses (:mod:`neurossl.eval`).

Methods, tasks and modalities (``modality = "any"``: the method serves spikes and
calcium; the Session file's modality picks the protocol and metrics):

- ``linear``: ridge per query for co_smoothing / inter_region / intra_region, population
  ridge for forecasting, logistic for choice / stimulus_*, per-bin ridge for behavior_*.
- ``linear_unpredictable``: ``linear``'s choice / stimulus_* / behavior_* decoders on
  the *unpredictable* neurons of each held-out session only, calcium only. The
  Perceiver family fine-tunes on and is scored from that group, while ``linear`` reads
  every neuron, so without this row the calcium decoding table compares a linear
  decoder on ~48 ROIs with Perceivers on ~18 of them.
- ``persistence``, ``mean``, ``linear_ar``, ``rnn``, ``poco``: forecasting only.
- ``oracle``: co_smoothing / inter_region / intra_region / forecasting, from the
  Session's ``truth`` (spikes: true rates, calcium: noise-free signal).

Model file (``outputs.model``): the shared format of :mod:`neurossl.train.model_file`
(family ``baselines``, stage ``fit``) with ``{"hparams", "sessions": {session: {task:
state | None}}}``; a state holds tensors and numbers only (read with ``weights_only``);
``None`` marks a task the session cannot pose (e.g. inter_region with one region).

Hyperparameters: :class:`~neurossl.methods.hparam_models.BaselineHParams` (every key,
default and bound is listed in ``docs/hparams.md``).

Query masks are seeded with ``splits.seed`` so every method is scored on the same halves;
the training seed only seeds the trained forecasters and the decoders' CV folds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neurossl.baselines import decoders, forecasting, spatial
from neurossl.baselines.session_data import (
    SessionInfo,
    SplitArrays,
    ground_truth,
    load_split,
    neuron_group_columns,
    select_neurons,
    session_info,
)
from neurossl.contract import Evaluation, StageInputs, StageOutputs
from neurossl.device import resolve_device
from neurossl.eval.queries import Query, spiking_queries
from neurossl.eval.records import eval_trials
from neurossl.eval.rows import make_rows
from neurossl.eval.scoring import score_queries
from neurossl.hparams import check, finetune_only_keys
from neurossl.methods.hparam_models import BaselineHParams
from neurossl.names import METHOD_MODALITY, SIMPLE_BASELINES
from neurossl.train.model_file import load_model_file, save_model_file

NEURON_QUERY_TASKS = ("co_smoothing", "inter_region", "intra_region")
FORECASTING_ONLY = ("persistence", "mean", "linear_ar", "rnn", "poco")
#: Decoding baselines restricted to one neuron group of the split step, and the group.
GROUP_DECODERS = {"linear_unpredictable": "unpredictable"}

Scored = tuple[dict[str, float], dict[str, np.ndarray]]


class Baseline:
    """One simple baseline or the oracle; see the module doc for what each one does."""

    pretrains = False
    finetune_only_hparams = finetune_only_keys(BaselineHParams)

    def __init__(self, name: str) -> None:
        if name not in (*SIMPLE_BASELINES, "oracle"):
            raise ValueError(
                f"{name!r} is not a simple baseline; expected {SIMPLE_BASELINES} or 'oracle'"
            )
        self.name = name
        #: "any": serves both modalities, the protocol following the Session's modality.
        self.modality = METHOD_MODALITY.get(name, "any")

    def supports(self, task: str) -> bool:
        is_decoding = decoders.is_trial_task(task) or decoders.is_behavior_task(task)
        if self.name in GROUP_DECODERS:
            return is_decoding
        if task == "forecasting":
            return True
        if self.name in FORECASTING_ONLY:
            return False
        if task in NEURON_QUERY_TASKS:
            return True
        return self.name == "linear" and is_decoding

    def supported_tasks(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(t for t in tasks if self.supports(t))

    def pretrain(self, inputs: StageInputs, outputs: StageOutputs) -> None:
        raise RuntimeError(f"baseline {self.name!r} has no pretraining stage (pretrains=False)")

    def finetune(self, inputs: StageInputs, pretrained: Path | None, outputs: StageOutputs) -> None:
        """Fit every supported task on each held-out session's train windows and save."""
        if outputs.model is None:
            raise ValueError(f"{self.name}: finetune needs outputs.model to write the fitted model")
        hparams = resolve_hparams(inputs.method, inputs.hparams)
        device = resolve_device(inputs.device)
        sessions: dict[str, dict[str, Any]] = {}
        for session in inputs.splits.heldout_sessions:
            info = session_info(inputs, session)
            train = None if self.name == "oracle" else self._split(inputs, info, "train")
            sessions[session] = {
                task: self._fit(task, info, train, inputs, hparams, device)
                for task in self.supported_tasks(inputs.tasks)
            }
        payload = {"hparams": hparams, "sessions": sessions}
        save_model_file(outputs.model, "baselines", self.name, "fit", payload)

    def evaluate(self, inputs: StageInputs, finetuned: Path | None) -> Evaluation:
        """Score every supported task on each held-out session's test windows."""
        model = self._load(finetuned)
        hparams = model["hparams"]
        evaluation = Evaluation()
        for session in inputs.splits.heldout_sessions:
            if session not in model["sessions"]:
                raise KeyError(f"{finetuned}: no fitted model for held-out session {session!r}")
            info = session_info(inputs, session)
            test = self._split(inputs, info, inputs.eval_split)
            for task in self.supported_tasks(inputs.tasks):
                if task not in model["sessions"][session]:
                    raise KeyError(f"{finetuned}: session {session!r} was not fitted for {task!r}")
                state = model["sessions"][session][task]
                queries = _queries(task, info, test.activity.shape[1], inputs.splits.seed)
                if task in NEURON_QUERY_TASKS and not queries:
                    continue
                values, arrays = self._score(task, info, test, state, queries, inputs, hparams)
                evaluation.rows.extend(make_rows(inputs, session, task, values))
                for key, array in arrays.items():
                    evaluation.arrays[f"{task}/{session}/{key}"] = np.asarray(array)
        return evaluation

    def _split(self, inputs: StageInputs, info: SessionInfo, split: str) -> SplitArrays:
        """One split's windows, cut to the method's neuron group when it has one."""
        data = load_split(inputs, info.session, split)
        if self.name not in GROUP_DECODERS:
            return data
        return select_neurons(data, neuron_group_columns(inputs, info, GROUP_DECODERS[self.name]))

    def _fit(
        self,
        task: str,
        info: SessionInfo,
        train: SplitArrays | None,
        inputs: StageInputs,
        hparams: dict[str, Any],
        device: str,
    ) -> dict[str, Any] | None:
        if self.name == "oracle" or train is None:
            return {}
        if task == "forecasting":
            seeds = (inputs.seed, inputs.splits.seed)
            return forecasting.fit_forecasting(self.name, info, train, hparams, seeds, device)
        if task in NEURON_QUERY_TASKS:
            queries = _queries(task, info, train.activity.shape[1], inputs.splits.seed)
            if not queries:
                return None
            return spatial.fit_spatial(queries, train.activity, info.modality, hparams)
        return decoders.fit_decoder(task, info, train, hparams, inputs.seed)

    def _score(
        self,
        task: str,
        info: SessionInfo,
        test: SplitArrays,
        state: dict[str, Any] | None,
        queries: list[Query],
        inputs: StageInputs,
        hparams: dict[str, Any],
    ) -> Scored:
        if state is None:
            raise ValueError(
                f"{info.path}: task {task!r} was not fittable at finetune time but has "
                "queries now; were the splits or neuron table changed after finetuning?"
            )
        if task == "forecasting":
            if self.name == "oracle":
                return forecasting.oracle_forecasting(info, test, hparams, inputs.splits.seed)
            return forecasting.score_forecasting(
                self.name, info, test, state, hparams, inputs.splits.seed
            )
        if task in NEURON_QUERY_TASKS:
            if self.name == "oracle":
                predictions = [ground_truth(info, test)] * len(queries)
            else:
                predictions = spatial.predict_spatial(
                    queries, state, test.activity, info.modality, hparams
                )
            values, assembled = score_queries(queries, predictions, test.activity, info.modality)
            return values, {"pred": assembled, "target": test.activity}
        trials = eval_trials(inputs, info.session)
        return decoders.score_decoder(task, info, test, state, hparams, trials)

    def _load(self, finetuned: Path | None) -> dict[str, Any]:
        if finetuned is None:
            raise ValueError(f"{self.name}: evaluate needs the finetuned model file")
        model = load_model_file(finetuned, "baselines", "fit")
        if model["method"] != self.name:
            raise ValueError(f"{finetuned}: a {model['method']!r} model, expected {self.name!r}")
        return model


def resolve_hparams(method: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """The stage's hparams checked by :class:`BaselineHParams` (defaults filled in)."""
    return check(method, BaselineHParams, hparams).model_dump()


def _queries(task: str, info: SessionInfo, n_bins: int, seed: int) -> list[Query]:
    """The task's neuron queries ([] for tasks that have none, or the session can't pose)."""
    if task not in NEURON_QUERY_TASKS:
        return []
    held_out = info.held_out
    if held_out is None:
        if task == "co_smoothing":
            raise KeyError(f"{info.path}: splits have no 'held_out' neurons for co_smoothing")
        held_out = np.zeros(info.regions.size, dtype=bool)
    return spiking_queries(task, info.regions, held_out, n_bins, seed)


def make_method(name: str) -> Baseline:
    return Baseline(name)
