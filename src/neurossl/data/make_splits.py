"""Compute a dataset's splits once, from its Session files.

Per-neuron statistics (mean, skewness, kurtosis, groups) go to a separate tidy table
instead of being written back into the Session files: the split rule must not modify
its own inputs, and one table is what the report plots anyway.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurossl.atomic import atomic_path
from neurossl.data import predictability as pred
from neurossl.data.session import Session, read_session
from neurossl.data.sources import nlb
from neurossl.data.splits import Splits, Windows, write_splits
from neurossl.data.windows import block_windows, trial_windows
from neurossl.names import session_key


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 0
    fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.7, "valid": 0.1, "test": 0.2}
    )
    #: Fractions for the held-out sessions' windows (None: ``fractions``). Why: a
    #: held-out recording with many trials can keep a few-label fine-tuning set and put
    #: the rest into evaluation, which shrinks test noise without adding labels.
    heldout_fractions: dict[str, float] | None = None
    #: "trials" (one window per trial around its align time), "blocks" (continuous) or
    #: "epochs" (blocks inside each stimulus epoch; Allen Visual Coding).
    windows: str = "trials"
    pre: float = 0.5
    post: float = 1.5
    block_window: float = 2.0
    block_length: float = 60.0
    #: Sessions, or else subjects, held out; if both empty, the last n_heldout_subjects.
    heldout_sessions: tuple[str, ...] = ()
    heldout_subjects: tuple[str, ...] = ()
    n_heldout_subjects: int = 1
    held_out_neuron_fraction: float = 0.25
    skewness_threshold: float | None = None
    kurtosis_threshold: float | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SplitConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown split config key(s) {unknown}; expected {sorted(known)}")
        values = dict(values)
        for key in ("heldout_sessions", "heldout_subjects"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator fixed by the seed and names, independent of processing order."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _extent(sessions: Mapping[str, Session]) -> tuple[float, float]:
    """The time range covered by every modality of one recording."""
    starts = [s.t0 for s in sessions.values()]
    stops = [s.t0 + s.n_bins * s.bin_size for s in sessions.values()]
    return max(starts), min(stops)


def _heldout_sessions(subjects: Mapping[str, str], config: SplitConfig) -> list[str]:
    if config.heldout_sessions:
        unknown = sorted(set(config.heldout_sessions) - set(subjects))
        if unknown:
            raise ValueError(
                f"split.heldout_sessions {unknown} not among sessions {sorted(subjects)}"
            )
        if set(config.heldout_sessions) == set(subjects):
            raise ValueError(
                "split.heldout_sessions holds out every session; none left to pretrain"
            )
        return sorted(config.heldout_sessions)
    ordered = sorted(set(subjects.values()))
    if config.heldout_subjects:
        unknown = sorted(set(config.heldout_subjects) - set(ordered))
        if unknown:
            raise ValueError(f"split.heldout_subjects {unknown} not among subjects {ordered}")
        chosen = set(config.heldout_subjects)
    else:
        if not 0 < config.n_heldout_subjects < len(ordered):
            raise ValueError(
                f"split.n_heldout_subjects={config.n_heldout_subjects} must leave at least one "
                f"of the {len(ordered)} subjects {ordered} for pretraining"
            )
        chosen = set(ordered[-config.n_heldout_subjects :])
    return sorted(s for s, subject in subjects.items() if subject in chosen)


def label_windows(windows: Windows, trials: pd.DataFrame) -> Windows:
    """Tie each continuous window to the trial (stimulus presentation) at its midpoint.

    Block windows carry no trial of their own; without this, stimulus decoding on
    continuous recordings (Allen) would have no labels. Windows in gaps keep -1.
    """
    if trials.empty:
        return windows
    order = np.argsort(trials["start"].to_numpy())
    starts = trials["start"].to_numpy()[order]
    stops = trials["stop"].to_numpy()[order]
    middle = 0.5 * (windows.start + windows.stop)
    candidate = np.clip(np.searchsorted(starts, middle, side="right") - 1, 0, None)
    inside = (middle >= starts[candidate]) & (middle < stops[candidate])
    trial = np.where(inside, order[candidate], -1).astype(np.int64)
    return Windows(windows.start, windows.stop, windows.split, trial)


def _train_rows(session: Session, windows: Windows) -> np.ndarray:
    """Bin indices of the training windows only: the only data statistics may see."""
    train = windows.select("train")
    n = round((train.stop[0] - train.start[0]) / session.bin_size) if len(train) else 0
    first = session.bin_index(train.start)
    rows = (first[:, None] + np.arange(n)[None, :]).ravel()
    return rows[(rows >= 0) & (rows < session.n_bins)]


def compute_splits(
    dataset: str, session_paths: Mapping[tuple[str, str], Path], config: SplitConfig
) -> tuple[Splits, pd.DataFrame]:
    """Splits and a per-neuron statistics table from {(session, modality): path}."""
    by_session: dict[str, dict[str, Session]] = {}
    for (session_id, modality), path in sorted(session_paths.items()):
        by_session.setdefault(session_id, {})[modality] = read_session(path)

    subjects = {
        session_id: next(iter(sessions.values())).meta["subject"]
        for session_id, sessions in by_session.items()
    }
    if nlb.single_recording(by_session):
        # An NLB dandiset is one recording whose file fixes its train/val trials: it is
        # pretrained, fine-tuned and scored on those, as NLB's own baselines are.
        heldout = pretrain = sorted(by_session)
    else:
        heldout = _heldout_sessions(subjects, config)
        pretrain = sorted(s for s in by_session if s not in heldout)

    windows: dict[str, Windows] = {}
    for session_id, sessions in by_session.items():
        first = next(iter(sessions.values()))
        rng = _rng(config.seed, "windows", session_id)
        fractions = (
            config.heldout_fractions
            if config.heldout_fractions is not None and session_id in heldout
            else config.fractions
        )
        if config.windows == "trials" and nlb.SPLIT_COLUMN in first.trials.columns:
            windows[session_id] = nlb.nlb_windows(
                first.trials,
                _extent(sessions),
                config.pre,
                config.post,
                fractions,
                rng,
                (first.t0, first.bin_size),
            )
        elif config.windows == "trials":
            if first.trials.empty:
                raise ValueError(
                    f"{first.meta['source_path']}: session {session_id!r} has no trials; "
                    "set split.windows: blocks for continuous recordings"
                )
            windows[session_id] = trial_windows(
                first.trials, _extent(sessions), config.pre, config.post, fractions, rng
            )
        elif config.windows == "blocks":
            windows[session_id] = block_windows(
                _extent(sessions), config.block_window, config.block_length, fractions, rng
            )
        elif config.windows == "epochs":
            from neurossl.data.sources.allen import epoch_block_windows

            blocks = epoch_block_windows(
                first.trials, config.block_window, config.block_length, fractions, rng
            )
            windows[session_id] = label_windows(blocks, first.trials)
        else:
            raise ValueError(
                f"split.windows must be 'trials', 'blocks' or 'epochs', got {config.windows!r}"
            )

    stats_rows = []
    for session_id, sessions in by_session.items():
        for modality, session in sessions.items():
            train = session.activity[_train_rows(session, windows[session_id])]
            skew, kurt = pred.trace_moments(train)
            ids = session.neurons["id"].astype(str).to_numpy()
            rng = _rng(config.seed, "held_out", session_id, modality)
            n_out = round(config.held_out_neuron_fraction * ids.size)
            held_out = np.zeros(ids.size, dtype=bool)
            held_out[rng.choice(ids.size, size=n_out, replace=False)] = True
            if nlb.HELDOUT_COLUMN in session.neurons.columns:  # the benchmark fixes them
                held_out = session.neurons[nlb.HELDOUT_COLUMN].to_numpy(dtype=bool)
            truth = session.truth.get("predictable")
            stats_rows.append(
                pd.DataFrame(
                    {
                        "session": session_id,
                        "modality": modality,
                        "neuron": ids,
                        "region": session.neurons["region"].astype(str).to_numpy(),
                        "cre_line": session.neurons["cre_line"].astype(str).to_numpy(),
                        "mean": train.mean(axis=0),
                        "skewness": skew,
                        "kurtosis": kurt,
                        "held_out": held_out,
                        "true_predictable": truth.astype(bool) if truth is not None else np.nan,
                    }
                )
            )
    table = pd.concat(stats_rows, ignore_index=True)

    neurons: dict[str, dict[str, dict[str, list[str]]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    predictable = np.zeros(len(table), dtype=bool)
    for modality, part in table.groupby("modality", sort=True):
        thresholds = pred.choose_thresholds(
            part["skewness"].to_numpy(),
            part["kurtosis"].to_numpy(),
            config.skewness_threshold,
            config.kurtosis_threshold,
        )
        chosen = pred.is_predictable(
            part["skewness"].to_numpy(), part["kurtosis"].to_numpy(), thresholds
        )
        predictable[part.index.to_numpy()] = chosen
        has_truth = part["true_predictable"].notna().all()
        precision, recall = (
            pred.precision_recall(chosen, part["true_predictable"].to_numpy(dtype=bool))
            if has_truth
            else (None, None)
        )
        summary[str(modality)] = {
            "skewness_threshold": thresholds.skewness,
            "kurtosis_threshold": thresholds.kurtosis,
            "threshold_source": thresholds.source,
            "n_predictable": int(chosen.sum()),
            "n_neurons": len(part),
            "precision": precision,
            "recall": recall,
        }
    table["predictable"] = predictable
    for (session_id, modality), part in table.groupby(["session", "modality"], sort=True):
        ids = part["neuron"]
        neurons.setdefault(str(modality), {})[str(session_id)] = {
            "held_in": ids[~part["held_out"]].tolist(),
            "held_out": ids[part["held_out"]].tolist(),
            "predictable": ids[part["predictable"]].tolist(),
            "unpredictable": ids[~part["predictable"]].tolist(),
        }

    splits = Splits(
        dataset=dataset,
        seed=config.seed,
        pretrain_sessions=pretrain,
        heldout_sessions=heldout,
        windows=windows,
        neurons=neurons,
        predictability=summary,
    )
    return splits, table


def write_split_outputs(
    dataset: str,
    session_files: list[str],
    config: SplitConfig,
    splits_path: str | Path,
    stats_path: str | Path,
) -> dict[str, Any]:
    """Compute splits from Session files and write splits.json + the neuron table."""
    splits, table = compute_splits(
        dataset, {session_key(p): Path(p) for p in session_files}, config
    )
    with atomic_path(stats_path) as tmp:
        table.to_csv(tmp, index=False)
    write_splits(splits, splits_path)
    return splits.predictability
