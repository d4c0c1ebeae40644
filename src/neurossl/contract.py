"""The interface every method family implements, so one set of rules runs them all.

The workflow has three stages per (dataset, method, size, seed):

- ``pretrain``: self-supervised training on the *pretraining sessions* (train windows,
  validation windows for model selection). Methods without pretraining skip it.
- ``finetune``: adaptation to the *held-out sessions* (new animals) on their train
  windows: the method's own adaptation (new stitchers / unit embeddings, then full
  fine-tuning) plus one head per decoding task it supports. One job trains all heads,
  because each head costs seconds while a job costs an interpreter and torch start-up.
- ``evaluate``: scores every supported task on the *test windows of held-out sessions*
  and returns tidy metric rows plus the predictions and targets they came from, so the
  report can be rebuilt (or re-scored) without retraining.

A method is looked up by name in :mod:`neurossl.methods.registry`. These types sit
below evaluation, the baselines and the methods (above only the data layer), so every
layer that produces or reads a stage's results imports them downward.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from neurossl.data.splits import Splits


@dataclass(frozen=True)
class StageInputs:
    """What every stage of a method receives from its rule."""

    dataset: str
    method: str
    size: str
    seed: int
    #: session id -> Session HDF5 of the method's modality (all sessions of the dataset).
    session_paths: dict[str, Path]
    splits: Splits
    #: Tasks configured for this dataset and modality; a method runs those it supports.
    tasks: tuple[str, ...]
    #: Model preset of ``size`` merged with the stage's training settings.
    hparams: dict[str, Any]
    #: "cpu", "cuda" or "cuda:N"; rules pass "auto" resolved by the engine.
    device: str = "cpu"
    #: Windows evaluation scores: "test" for reported numbers, "valid" for choosing
    #: hyper-parameters without looking at the test windows.
    eval_split: str = "test"


def _shared_activity_attribute(inputs: StageInputs, name: str, what: str) -> Any:
    """One attribute of the stage's Session files' activity, which must agree across them."""
    found = _activity_attribute(tuple(inputs.session_paths.values()), name)
    if len(found) != 1:
        raise ValueError(f"{inputs.method}: the stage's Session files mix {what} {set(found)}")
    return next(iter(found))


@functools.cache
def _activity_attribute(paths: tuple[Path, ...], name: str) -> frozenset[Any]:
    """The attribute's distinct values over ``paths``, read once per process: a stage asks
    for its modality and bin size many times, and its Session files do not change under it."""
    values = set()
    for path in paths:
        with h5py.File(path, "r") as f:
            values.add(f["activity"].attrs[name])
    return frozenset(values)


def session_modality(inputs: StageInputs) -> str:
    """The modality the stage's Session files record (they must agree): methods that
    serve both modalities branch on it."""
    return str(_shared_activity_attribute(inputs, "modality", "modalities"))


def session_bin_size(inputs: StageInputs) -> float:
    """The one bin width (seconds) of the stage's Session files."""
    return float(_shared_activity_attribute(inputs, "bin_size", "bin sizes"))


@dataclass(frozen=True)
class StageOutputs:
    """Where a stage writes; every file is written atomically."""

    model: Path | None = None
    train_log: Path | None = None
    checkpoint_dir: Path | None = None
    metrics: Path | None = None
    predictions: Path | None = None


@dataclass(frozen=True)
class MetricRow:
    """One value of the tidy metrics table (columns as in metrics.csv)."""

    dataset: str
    session: str
    method: str
    size: str
    task: str
    metric: str
    seed: int
    value: float


@dataclass
class Evaluation:
    """What ``evaluate`` returns: metric rows and the arrays they were computed from."""

    rows: list[MetricRow] = field(default_factory=list)
    #: Keys like "co_smoothing/sub-01_ses-01/pred"; written to predictions.npz.
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class Method(Protocol):
    name: str
    modality: str
    #: False for scratch models and simple baselines: the pretrain stage is skipped.
    pretrains: bool
    #: hparam keys the pretrain stage never reads. The pretrain rule leaves them out of
    #: its params, so tuning fine-tuning does not rerun (hours of) pretraining.
    finetune_only_hparams: frozenset[str]

    def supported_tasks(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        """The subset of the configured tasks this method can be scored on."""
        ...

    def pretrain(self, inputs: StageInputs, outputs: StageOutputs) -> None: ...

    def finetune(
        self, inputs: StageInputs, pretrained: Path | None, outputs: StageOutputs
    ) -> None: ...

    def evaluate(self, inputs: StageInputs, finetuned: Path | None) -> Evaluation: ...
