"""The ``linear`` baseline on decoding tasks: trial labels and continuous behaviour.

Trial labels (``choice``, ``stimulus_<variable>``) are decoded from the mean activity of
each window in ``decode_chunks`` time chunks with the shared logistic decoder; a
behaviour variable (``behavior_<variable>``) is decoded bin by bin from the (smoothed)
population activity with the shared ridge decoder. The fitted maps are kept as tensors.

Where the targets come from (the same convention for every method):

- ``choice`` -> trial column ``choice``; ``stimulus_<v>`` -> trial column
  ``stimulus_<v>`` or else ``<v>`` (:func:`neurossl.names.label_columns`), read per
  window through the loader's labels.
- ``behavior_<v>`` -> behaviour variable ``<v>`` of the Session.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurossl.baselines.features import chunk_means, smoothed
from neurossl.baselines.session_data import SessionInfo, SplitArrays
from neurossl.eval.decoding import fit_continuous, fit_discrete
from neurossl.eval.linear_maps import LinearMap
from neurossl.eval.metrics import accuracy, balanced_accuracy, r2
from neurossl.names import BEHAVIOR_PREFIX, label_columns

Scored = tuple[dict[str, float], dict[str, np.ndarray]]


def is_trial_task(task: str) -> bool:
    return task == "choice" or task.startswith("stimulus_")


def is_behavior_task(task: str) -> bool:
    return task.startswith(BEHAVIOR_PREFIX)


def trial_labels(info: SessionInfo, data: SplitArrays, task: str) -> tuple[np.ndarray, ...]:
    """(labels, keep): the task's label per window and which windows have one."""
    column = next((c for c in label_columns(task) if c in data.labels), None)
    if column is None:
        raise KeyError(
            f"{info.path}: task {task!r} needs a trial column named one of "
            f"{label_columns(task)}; the Session's numeric trial columns are {sorted(data.labels)}"
        )
    labels = data.labels[column]
    keep = ~np.isnan(labels) if labels.dtype.kind == "f" else np.ones(labels.shape, dtype=bool)
    return labels, keep


def behavior_target(info: SessionInfo, data: SplitArrays, task: str) -> np.ndarray:
    variable = task.removeprefix(BEHAVIOR_PREFIX)
    if variable not in data.behavior_names:
        raise KeyError(
            f"{info.path}: task {task!r} needs behaviour variable {variable!r}; the Session "
            f"has {list(data.behavior_names)}"
        )
    return data.behavior[:, :, data.behavior_names.index(variable)]


def fit_decoder(
    task: str, info: SessionInfo, train: SplitArrays, hparams: dict[str, Any], seed: int
) -> dict[str, Any]:
    x, y, keep = _design(task, info, train, hparams)
    if is_trial_task(task):
        return fit_discrete(x[keep], y[keep], seed).state()
    return fit_continuous(x, y).state()


def score_decoder(
    task: str,
    info: SessionInfo,
    test: SplitArrays,
    state: dict[str, Any],
    hparams: dict[str, Any],
    trials: np.ndarray,
) -> Scored:
    """Scores and the arrays behind them (neurossl.eval.records); ``trials``: the trial
    row of each test window."""
    x, y, keep = _design(task, info, test, hparams)
    decoder = LinearMap.from_state(state)
    if is_trial_task(task):
        pred = decoder.predict(x[keep])
        values = {"bacc": balanced_accuracy(y[keep], pred), "acc": accuracy(y[keep], pred)}
        arrays = {"pred": pred, "target": y[keep], "trial_ids": np.asarray(trials)[keep]}
        proba = decoder.predict_proba(x[keep])  # raises unless the map is a classifier
        return values, arrays | {"proba": proba, "classes": decoder.classes}
    pred = decoder.predict(x)[:, 0]
    shape = test.activity.shape[:2]
    arrays = {"pred": pred.reshape(shape), "target": y.reshape(shape), "trial_ids": trials}
    return {"r2": r2(pred, y)}, arrays


def _design(
    task: str, info: SessionInfo, data: SplitArrays, hparams: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, targets, rows with a target) of one split for one decoding task."""
    if is_trial_task(task):
        labels, keep = trial_labels(info, data, task)
        return chunk_means(data.activity, int(hparams["decode_chunks"])), labels, keep
    if not is_behavior_task(task):
        raise ValueError(f"task {task!r} is not a decoding task")
    features = smoothed(data.activity, info.modality, float(hparams["smooth_bins"]))
    y = behavior_target(info, data, task).reshape(-1)
    return features.reshape(y.size, -1), y, ~np.isnan(y)
