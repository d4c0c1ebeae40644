"""Where each metric row's arrays go in ``predictions.npz``: one key scheme for every method.

Every row of ``metrics.json`` can be recomputed from these arrays alone (tests do it
with numpy, scikit-learn and nlb_tools). ``{session}`` is the bare session id (rows
name it ``{session}.{modality}``); every ``[W, ...]`` array follows the order of the
scored split's windows, which ``windows/{session}/start|stop|trial`` list (seconds,
trial row or -1).

- ``{task}/{session}/pred`` and ``.../target``: what the task's rows were scored on.
  Spiking activity tasks: expected counts per bin ``[W, T, N]``, NaN off the scored
  entries, against the counts (a baseline's spiking forecast is ``[W, H, N]``, the
  last H bins). Forecasting on calcium: ``[W, H, N]`` per horizon step. Decoding: the
  decoded label per window ``[W]`` or value per bin ``[W, T]``; NaN targets unscored.
- ``.../proba`` ``[W, K]`` and ``.../classes`` ``[K]``: a label decoder's class
  probabilities, columns in ``classes`` order; ``.../trial_ids`` ``[W]``: the trial
  row of each decoded window.
- The same names prefixed ``frozen_`` (``.../frozen_pred`` ...): the linear probe of a
  frozen backbone, whose rows are ``frozen_<metric>``.
"""

from __future__ import annotations

import numpy as np

from neurossl.contract import Evaluation, StageInputs
from neurossl.data.splits import Splits
from neurossl.eval.decoding import Decoded

FROZEN = "frozen_"


def eval_trials(inputs: StageInputs, session: str) -> np.ndarray:
    """Trial row of each scored window of a session, in the order windows are read."""
    return np.asarray(inputs.splits.windows[session].select(inputs.eval_split).trial)


def window_arrays(splits: Splits, sessions: list[str], split: str) -> dict[str, np.ndarray]:
    """``windows/{session}/start|stop|trial`` of the scored split."""
    out: dict[str, np.ndarray] = {}
    for session in sessions:
        windows = splits.windows[session].select(split)
        out[f"windows/{session}/start"] = np.asarray(windows.start, dtype=np.float64)
        out[f"windows/{session}/stop"] = np.asarray(windows.stop, dtype=np.float64)
        out[f"windows/{session}/trial"] = np.asarray(windows.trial, dtype=np.int64)
    return out


def put_decoding(
    evaluation: Evaluation,
    task: str,
    session: str,
    pred: np.ndarray,
    target: np.ndarray,
    trial_ids: np.ndarray,
    proba: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    frozen: bool = False,
) -> None:
    """Store one decoder's answers on one session (``frozen``: the frozen-backbone probe)."""
    pred, target, trial_ids = np.asarray(pred), np.asarray(target), np.asarray(trial_ids)
    if pred.shape != target.shape or trial_ids.shape != pred.shape[:1]:
        raise ValueError(
            f"{task}/{session}: pred {pred.shape}, target {target.shape} and trial_ids "
            f"{trial_ids.shape} must share their first axis (pred and target their shape)"
        )
    if (proba is None) != (classes is None):
        raise ValueError(f"{task}/{session}: class probabilities need their classes, and back")
    prefix = f"{task}/{session}/{FROZEN if frozen else ''}"
    evaluation.arrays[prefix + "pred"] = pred
    evaluation.arrays[prefix + "target"] = target
    evaluation.arrays[prefix + "trial_ids"] = trial_ids.astype(np.int64)
    if proba is not None and classes is not None:
        proba = np.asarray(proba, dtype=np.float32)
        if proba.shape != (pred.shape[0], np.size(classes)):
            raise ValueError(
                f"{task}/{session}: proba {proba.shape} is not [windows, classes] "
                f"({pred.shape[0]}, {np.size(classes)})"
            )
        evaluation.arrays[prefix + "proba"] = proba
        evaluation.arrays[prefix + "classes"] = np.asarray(classes)


def put_decoded(
    evaluation: Evaluation,
    task: str,
    session: str,
    decoded: Decoded,
    trial_ids: np.ndarray,
    frozen: bool,
    shape: tuple[int, ...] | None = None,
) -> None:
    """:func:`put_decoding` of a shared linear decoder's result (``shape``: per-bin
    predictions reshaped back to ``[W, T]``)."""
    pred, target = decoded.pred, decoded.target
    if shape is not None:
        pred, target = pred.reshape(shape), target.reshape(shape)
    put_decoding(
        evaluation, task, session, pred, target, trial_ids, decoded.proba, decoded.classes, frozen
    )
