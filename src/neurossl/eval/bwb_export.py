"""A run's spiking predictions in IBL BrainWideBench's submission format, scored by its scorers.

``ibl_bwb_eval`` (the benchmark's own package) defines the format and the scores; this
module only maps neurossl's saved arrays (:mod:`neurossl.eval.records`) onto it, so a
reader can check neurossl's numbers with BrainWideBench's code:

- TS2 (``co_smoothing``, ``forecasting``): one ``PredictionsWriter`` file per
  (method, task, session, seed) holding ``predictions`` (log expected counts of the
  scored bins x scored units, ``[windows, bins, units]``) and ``window_timestamps``
  (window start, seconds); its ground truth holds the observed counts as ``targets``.
- TS1 (``choice`` and behaviours BrainWideBench names, e.g. ``wheel_speed``):
  ``predictions`` (class log-probabilities ``[trials, 1, 2]``, or values
  ``[trials, bins, 1]``) and ``trial_id``; the ground truth holds ``values``.

Ground truth goes to ``ground_truth/{task_id}/{session}/ground_truth.safetensors`` as
the scorers look it up. The figures are BrainWideBench-*convention* scores of
neurossl's own tasks, not leaderboard entries: :data:`DIFFERENCES` says what differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurossl.atomic import atomic_dir, atomic_path
from neurossl.eval.metrics import EPS

#: neurossl task -> BrainWideBench (suite, task). Calcium runs and other tasks (inter-
#: and intra-region, stimulus classes) have no BrainWideBench counterpart.
BWB_TASKS = {
    "co_smoothing": ("ts2", "co_smoothing"),
    "forecasting": ("ts2", "forecasting"),
    "choice": ("ts1", "choice"),
    "behavior_wheel_speed": ("ts1", "wheel_speed"),
    "behavior_whisker_motion_energy": ("ts1", "whisker_motion_energy"),
}

#: Where neurossl's task definitions differ from BrainWideBench's; shown with the scores.
DIFFERENCES = (
    "Windows: neurossl scores its own trial-aligned windows (split.pre + split.post "
    "seconds at the preprocess bin size); BrainWideBench cuts its own windows and bins.",
    "Scored bins: neurossl's co_smoothing scores every bin of a window and its "
    "forecasting the last 10 % of bins; BrainWideBench's TS2 co_smoothing scores the "
    "trailing second and its forecasting a fixed share of a 1 s base window.",
    "Held-out units: neurossl holds out split.held_out_neuron_fraction of each session's "
    "units, drawn with split.seed; BrainWideBench fixes its own held-out units.",
    "Silent units: BrainWideBench's bps leaves out units without a spike in the scored "
    "bins, neurossl's (NLB's) charges the model for them; the two are equal when no "
    "scored unit is silent.",
    "Behaviour: BrainWideBench's TS1 decodes 1 s of behaviour sampled at 50 Hz; neurossl "
    "decodes every bin of its windows at the preprocess bin size.",
    "Sessions: the scores are for neurossl's held-out sessions, not BrainWideBench's "
    "evaluation recordings (ibl_bwb_eval.protocol.EVAL_RECORDING_IDS).",
)

SCORE_COLUMNS = [
    "method", "size", "seed", "session", "task", "bwb_task", "metric", "value",
    "neurossl_value", "silent_units",
]  # fmt: skip


@dataclass(frozen=True)
class Exported:
    """One prediction file and its ground truth."""

    session: str
    task: str
    task_id: str
    predictions: Path
    ground_truth: Path
    #: TS2: scored units without a spike in the scored bins (BrainWideBench drops them).
    silent_units: int = 0


def export_run(predictions_npz: Path, out_dir: Path, label: str, seed: int) -> list[Exported]:
    """Write every BrainWideBench-mappable task of one evaluation's predictions.npz."""
    with np.load(predictions_npz) as saved:
        arrays = {key: saved[key] for key in saved.files}
    exported = []
    for key in sorted(arrays):
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != "pred" or parts[0] not in BWB_TASKS:
            continue
        task, session = parts[0], parts[1]
        starts = arrays.get(f"windows/{session}/start")
        if starts is None:
            raise KeyError(f"{predictions_npz}: no windows/{session}/start for {key}")
        suite, bwb_task = BWB_TASKS[task]
        pred, target = arrays[key], arrays[f"{task}/{session}/target"]
        if suite == "ts2":
            exported.append(
                _export_ts2(out_dir, label, seed, session, task, bwb_task, pred, target, starts)
            )
        elif f"{task}/{session}/trial_ids" in arrays:
            item = _export_ts1(out_dir, label, seed, session, task, bwb_task, arrays)
            if item is not None:
                exported.append(item)
    return exported


def score(item: Exported) -> dict[str, float]:
    """The file scored by ibl_bwb_eval's own scorer of its suite."""
    from ibl_bwb_eval.scoring import ts1, ts2

    if item.task_id.startswith("ts2-"):
        return ts2.score_file(item.predictions, item.ground_truth)
    return ts1.score_file(item.task_id, item.predictions, item.ground_truth)


def export_and_score(runs: list[Run], out_dir: Path) -> pd.DataFrame:
    """Export and score every run; one row per score, neurossl's own value beside it.

    ``neurossl_value`` is the same (session, task) row of the run's metrics.json under
    the same metric name (NaN where neurossl has no such metric, e.g. ``f1``).
    """
    rows = []
    for run in runs:
        own = own_values(run.metrics)
        for item in export_run(run.predictions, out_dir, run.label, run.seed):
            for metric, value in score(item).items():
                rows.append(
                    {
                        "method": run.method,
                        "size": run.size,
                        "seed": run.seed,
                        "session": item.session,
                        "task": item.task,
                        "bwb_task": item.task_id,
                        "metric": metric,
                        "value": float(value),
                        "neurossl_value": own.get((item.session, item.task, metric), np.nan),
                        "silent_units": item.silent_units,
                    }
                )
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


@dataclass(frozen=True)
class Run:
    """One evaluation of a spiking method: its two files and its labels."""

    method: str
    size: str
    seed: int
    predictions: Path
    metrics: Path

    @property
    def label(self) -> str:
        """The submission label BrainWideBench files predictions under."""
        return f"{self.method}-{self.size}"

    @classmethod
    def from_predictions(cls, path: Path) -> Run:
        """From ``eval/{method}/{modality}/{size}/seed{seed}/predictions.npz``."""
        path = Path(path)
        seed_dir = path.parent
        if not seed_dir.name.startswith("seed"):
            raise ValueError(f"{path}: expected eval/<method>/<modality>/<size>/seed<N>/")
        size, method = seed_dir.parent.name, seed_dir.parents[2].name
        return cls(method, size, int(seed_dir.name[4:]), path, seed_dir / "metrics.json")


def own_values(metrics_json: Path) -> dict[tuple[str, str, str], float]:
    """(bare session, task, metric) -> value of an evaluation's metrics.json."""
    rows = json.loads(Path(metrics_json).read_text())["rows"]
    return {
        (row["session"].rsplit(".", 1)[0], row["task"], row["metric"]): float(row["value"])
        for row in rows
    }


# --- writers ---


def _writer(out_dir: Path, label: str, seed: int, task_id: str, session: str):
    from ibl_bwb_eval.predictions import PredictionsWriter

    return PredictionsWriter(
        enable=True,
        base_path=out_dir / "predictions",
        task=task_id,
        seed=seed,
        label=label,
        metadata={"recording_id": session},
        path_fn=lambda base, meta: base / meta["recording_id"],
    )


def _prediction_path(out_dir: Path, label: str, tid: str, session: str, seed: int) -> Path:
    """Where :func:`_writer`'s file lands (PredictionsWriter's documented layout)."""
    return out_dir / "predictions" / label / tid / session / f"seed_{seed}.safetensors"


def _save_truth(path: Path, tensors: dict, session: str) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"recording_id": session})


def _scored_block(pred: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(bins, units) whose product is exactly the scored (non-NaN) entries of [W, T, N]."""
    scored = ~np.isnan(pred)
    per_entry = scored.any(axis=0)  # [T, N]
    bins, units = per_entry.any(axis=1), per_entry.any(axis=0)
    if not (scored == (bins[:, None] & units[None, :])[None]).all():
        raise ValueError(f"{what}: scored entries are not a block of bins x units")
    return np.flatnonzero(bins), np.flatnonzero(units)


def _export_ts2(
    out_dir: Path,
    label: str,
    seed: int,
    session: str,
    task: str,
    bwb_task: str,
    pred: np.ndarray,
    target: np.ndarray,
    starts: np.ndarray,
) -> Exported:
    import torch
    from ibl_bwb_eval.tasks import task_id

    tid = task_id("ts2", bwb_task)
    if pred.shape == target.shape:  # NaN off the scored entries
        bins, units = _scored_block(pred, f"{task}/{session}")
        pred = pred[:, bins][:, :, units]
        target = target[:, bins][:, :, units]
    if pred.shape != target.shape or pred.shape[0] != starts.shape[0]:
        raise ValueError(
            f"{task}/{session}: pred {pred.shape}, target {target.shape} and "
            f"{starts.shape[0]} windows do not match"
        )
    log_rates = np.ascontiguousarray(np.log(np.maximum(pred.astype(np.float64), EPS)))
    target = np.ascontiguousarray(target)
    writer = _writer(out_dir, label, seed, tid, session)
    # float64 timestamps: the scorer aligns windows by exact equality.
    writer.set(window_timestamps=torch.from_numpy(starts.astype(np.float64)), dtype=torch.float64)
    writer.set(predictions=torch.from_numpy(log_rates))
    writer.save()
    truth = out_dir / "ground_truth" / label / tid / session / "ground_truth.safetensors"
    _save_truth(
        truth,
        {
            "targets": torch.from_numpy(target.astype(np.float32)),
            "window_timestamps": torch.from_numpy(starts.astype(np.float64)),
        },
        session,
    )
    silent = int((target.reshape(-1, target.shape[-1]).sum(axis=0) == 0).sum())
    return Exported(
        session, task, tid, _prediction_path(out_dir, label, tid, session, seed), truth, silent
    )


def _export_ts1(
    out_dir: Path, label: str, seed: int, session: str, task: str, bwb_task: str, arrays: dict
) -> Exported | None:
    """None when the decoded labels cannot be put in BrainWideBench's classes."""
    import torch
    from ibl_bwb_eval.tasks import get_ts1_readout_spec, task_id

    tid = task_id("ts1", bwb_task)
    spec = get_ts1_readout_spec(bwb_task)
    prefix = f"{task}/{session}/"
    trials, target = arrays[prefix + "trial_ids"], arrays[prefix + "target"].astype(np.float64)
    if prefix + "proba" in arrays:
        classes = arrays[prefix + "classes"].astype(np.float64)
        if classes.size != spec.dim:
            return None  # e.g. a choice column with a third value
        keep = (trials >= 0) & np.isin(target, classes)
        values = np.searchsorted(classes, target[keep])[:, None].astype(np.float32)
        proba = arrays[prefix + "proba"][keep].astype(np.float64)
        predictions = np.ascontiguousarray(np.log(np.maximum(proba, 1e-12))[:, None, :])
    else:
        pred = arrays[prefix + "pred"].astype(np.float64)
        keep = (trials >= 0) & ~np.isnan(target).any(axis=1)
        predictions = np.ascontiguousarray(pred[keep][:, :, None])
        values = target[keep][:, :, None]
    if not keep.any():
        return None
    writer = _writer(out_dir, label, seed, tid, session)
    writer.set(trial_id=torch.from_numpy(trials[keep].astype(np.int64)))
    writer.set(predictions=torch.from_numpy(predictions))
    writer.save()
    truth = out_dir / "ground_truth" / label / tid / session / "ground_truth.safetensors"
    _save_truth(
        truth,
        {
            "values": torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)),
            "trial_id": torch.from_numpy(trials[keep].astype(np.int64)),
        },
        session,
    )
    return Exported(session, task, tid, _prediction_path(out_dir, label, tid, session, seed), truth)


def write_scores(runs: list[Run], scores_csv: Path, files_dir: Path) -> pd.DataFrame:
    """The rule's job: every file under ``files_dir`` and the tidy scores, both atomically.

    ``files_dir`` holds ``predictions/{label}/...`` and ``ground_truth/{label}/...``
    (label ``{method}-{size}``), so ``python -m ibl_bwb_eval.scoring.ts2 --pred_dir
    files/predictions/<label> --gt_dir files/ground_truth/<label>`` rescores a method
    with BrainWideBench's own command line.
    """
    with atomic_dir(files_dir) as tmp:
        table = export_and_score(runs, tmp)
        (tmp / "DIFFERENCES.txt").write_text("\n".join(DIFFERENCES) + "\n")
    with atomic_path(scores_csv) as path:
        table.to_csv(path, index=False)
    return table
