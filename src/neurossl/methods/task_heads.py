"""Fine-tuned decoding heads: targets, losses and scores per vocabulary task.

Shared by the Perceiver (POYO-SSL) and NDT (MtM) families, so a head-decoded ``bacc`` or
``r2`` means the same thing in both. A model used with these helpers maps
``model(batch, task_names)`` to one output per task: logits [B, classes] for a window
label, values [B, T] for a per-bin behaviour.

A task name says where its target lives in a batch (docs/batch_format.md):
``stimulus_<var>`` -> ``label/<var>`` and ``choice`` -> ``label/choice`` are one label
per window (classification); ``behavior_<var>`` -> column ``<var>`` of ``behavior`` is
one value per time bin (regression). What a head needs to turn batch entries into
training targets (class values, standardisation) is fitted on the fine-tuning train
windows and saved with the model, so evaluation decodes with exactly those.

Scores (on held-out test windows): classification -> ``acc`` and ``bacc``; per-bin
regression -> ``r2`` over all scored bins. For tasks whose name contains
``natural_movie_frame`` (frames of a movie as classes), ``acc`` is *within-delta*
accuracy: a prediction counts when it is at most ``frame_delta`` frames from the true
frame (labels are frame numbers), the usual score for movie-frame decoding on the Allen
Brain Observatory; ``bacc`` stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.contract import Evaluation, StageInputs
from neurossl.data.loader import Batch, WindowDataset, make_loader
from neurossl.device import autocast
from neurossl.eval.metrics import accuracy, balanced_accuracy, r2
from neurossl.eval.records import eval_trials, put_decoding
from neurossl.eval.rows import make_rows
from neurossl.models.perceiver import CLASSIFICATION, PER_BIN
from neurossl.names import BEHAVIOR_PREFIX, label_columns

_IGNORE = -100
LossFn = Callable[[nn.Module, Batch], tuple[Tensor, dict[str, float]]]
MOVIE_FRAME_MARKER = "natural_movie_frame"


def label_keys(task: str) -> tuple[str, ...]:
    """Batch keys that may hold a window-label task's target (:func:`names.label_columns`)."""
    return tuple("label/" + column for column in label_columns(task))


def find_label_key(task: str, keys: Iterable[str]) -> str:
    """The first of :func:`label_keys` present among a batch's keys, or a clear error."""
    keys = set(keys)
    for key in label_keys(task):
        if key in keys:
            return key
    labels = sorted(k for k in keys if k.startswith("label/"))
    raise KeyError(
        f"task {task!r} needs one of the trial labels {label_keys(task)}; found {labels}"
    )


@dataclass(frozen=True)
class TaskHead:
    """How one task's targets are read, trained on and scored."""

    name: str
    kind: str
    #: Label values in class order (classification).
    classes: tuple[float, ...] = ()
    #: Behaviour column and its train-split standardisation (per-bin regression).
    column: int = -1
    mean: float = 0.0
    std: float = 1.0

    @property
    def classifies(self) -> bool:
        """One label per window (else one value per time bin)."""
        return self.kind == CLASSIFICATION

    @property
    def n_out(self) -> int:
        return len(self.classes) if self.classifies else 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"classes": list(self.classes)}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TaskHead:
        return cls(**(payload | {"classes": tuple(payload["classes"])}))

    def raw_target(self, batch: dict[str, Tensor]) -> Tensor:
        """Label values [B] or behaviour values [B, T] (NaN where missing)."""
        if self.kind == PER_BIN:
            return batch["behavior"][..., self.column]
        return batch[find_label_key(self.name, batch)]

    def target(self, batch: dict[str, Tensor]) -> Tensor:
        """Class indices (``-100`` for labels outside the classes) or standardised values."""
        raw = self.raw_target(batch)
        if self.kind == PER_BIN:
            return (raw.float() - self.mean) / self.std
        classes = torch.tensor(self.classes, dtype=torch.float64, device=raw.device)
        hit = raw.double()[:, None] == classes[None, :]
        index = hit.float().argmax(dim=1)
        return torch.where(hit.any(dim=1), index, torch.full_like(index, _IGNORE))

    def loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = self.target(batch)
        if self.kind == CLASSIFICATION:
            if not (target != _IGNORE).any():
                return out.sum() * 0.0
            return F.cross_entropy(out.float(), target, ignore_index=_IGNORE)
        valid = ~torch.isnan(target)
        squared = (out.float() - torch.nan_to_num(target)).square()
        return torch.where(valid, squared, torch.zeros_like(squared)).sum() / valid.sum().clamp(
            min=1
        )

    def decode(self, out: Tensor) -> np.ndarray:
        """Predictions in target units: label values [B] or behaviour values [B, T]."""
        if self.kind == CLASSIFICATION:
            return np.asarray(self.classes)[out.float().argmax(dim=-1).cpu().numpy()]
        return out.float().cpu().numpy() * self.std + self.mean

    def probabilities(self, out: Tensor) -> np.ndarray | None:
        """Class probabilities [B, classes] (``classes`` order); None for regression."""
        if self.kind != CLASSIFICATION:
            return None
        return torch.softmax(out.float(), dim=-1).cpu().numpy()

    def score(self, pred: np.ndarray, target: np.ndarray, frame_delta: int) -> dict[str, float]:
        if self.kind == PER_BIN:
            return {"r2": r2(pred.reshape(-1), target.reshape(-1))}
        scored = ~np.isnan(target.astype(np.float64))
        pred, target = pred[scored], target[scored]
        acc = accuracy(target, pred)
        if MOVIE_FRAME_MARKER in self.name:
            acc = float(np.mean(np.abs(pred - target) <= frame_delta))
        return {"acc": acc, "bacc": balanced_accuracy(target, pred)}


def fit_task_head(
    task: str, labels: np.ndarray | None, behavior: np.ndarray | None, column: int
) -> TaskHead:
    """Fit a head's target encoding on the fine-tuning train windows.

    ``labels``: the task's label of every train window; ``behavior``: [W, T] values of
    the task's behaviour column.
    """
    if task.startswith(BEHAVIOR_PREFIX):
        values = behavior[~np.isnan(behavior)] if behavior is not None else np.empty(0)
        if values.size < 2:
            raise ValueError(f"task {task!r}: fewer than 2 non-NaN behaviour values to train on")
        std = float(values.std())
        return TaskHead(task, PER_BIN, column=column, mean=float(values.mean()), std=std or 1.0)
    values = np.asarray(labels, dtype=np.float64)
    classes = np.unique(values[~np.isnan(values)])
    if classes.size < 2:
        raise ValueError(
            f"task {task!r}: train windows have {classes.size} distinct label(s) "
            f"{classes.tolist()}; classification needs at least 2"
        )
    return TaskHead(task, CLASSIFICATION, classes=tuple(float(c) for c in classes))


def fit_task_heads(tasks: Sequence[str], train_ds: WindowDataset) -> list[TaskHead]:
    """Fit every task's target encoding on the fine-tuning train windows."""
    names = {train_ds.behavior_names(s) for s in train_ds.sessions}
    if len(names) != 1:
        raise ValueError(f"held-out sessions differ in behaviour variables: {sorted(names)}")
    behavior_names = names.pop()
    batches = list(make_loader(train_ds, 64, False, 0, by_session=False))
    heads = []
    for task in tasks:
        labels, behavior, column = None, None, -1
        if task.startswith(BEHAVIOR_PREFIX):
            variable = task[len(BEHAVIOR_PREFIX) :]
            if variable not in behavior_names:
                raise KeyError(
                    f"task {task!r}: behaviour {variable!r} is not among the held-out "
                    f"sessions' behaviour variables {list(behavior_names)}"
                )
            column = behavior_names.index(variable)
            behavior = np.concatenate([b["behavior"][..., column].numpy() for b in batches])
        else:
            key = find_label_key(task, batches[0])
            labels = np.concatenate([b[key].numpy() for b in batches])
        heads.append(fit_task_head(task, labels, behavior, column))
    return heads


def task_loss_fn(heads: Sequence[TaskHead]) -> LossFn:
    """``loss_fn(model, batch)`` for the engine: the heads' losses summed, each logged."""
    names = tuple(h.name for h in heads)

    def loss_fn(model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        out = model(batch, names)
        losses = {h.name: h.loss(out[h.name], batch) for h in heads}
        total = torch.stack(list(losses.values())).sum()
        return total, {f"loss_{name}": float(value.detach()) for name, value in losses.items()}

    return loss_fn


def score_heads(
    model: Callable[[Batch, tuple[str, ...]], dict[str, Tensor]],
    batches: Iterable[Batch],
    heads: Sequence[TaskHead],
    device: str,
    frame_delta: int,
    inputs: StageInputs,
    session: str,
    evaluation: Evaluation,
    prepare: Callable[[Batch], Batch] | None = None,
) -> None:
    """Every head on one session's test batches in one pass: its rows and decoding records.

    Each batch is moved to ``device`` and passed through ``prepare`` (a family's own
    remapping, if any); ``model(batch, names)`` answers every head at once.
    """
    names = tuple(h.name for h in heads)
    preds: dict[str, list[np.ndarray]] = {name: [] for name in names}
    targets: dict[str, list[np.ndarray]] = {name: [] for name in names}
    probas: dict[str, list[np.ndarray]] = {name: [] for name in names}
    with torch.no_grad(), autocast(device):
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            if prepare is not None:
                batch = prepare(batch)
            out = model(batch, names)
            for head in heads:
                preds[head.name].append(head.decode(out[head.name]))
                targets[head.name].append(head.raw_target(batch).float().cpu().numpy())
                proba = head.probabilities(out[head.name])
                if proba is not None:
                    probas[head.name].append(proba)
    trials = eval_trials(inputs, session)
    for head in heads:
        pred, target = np.concatenate(preds[head.name]), np.concatenate(targets[head.name])
        proba = np.concatenate(probas[head.name]) if probas[head.name] else None
        classes = None if proba is None else np.asarray(head.classes)
        put_decoding(evaluation, head.name, session, pred, target, trials, proba, classes)
        values = head.score(pred, target, frame_delta)
        evaluation.rows.extend(make_rows(inputs, session, head.name, values))
