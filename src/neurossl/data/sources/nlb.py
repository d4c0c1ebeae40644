"""Neural Latents Benchmark files (DANDI 000128 MC_Maze, 000138-000140 its scaled
versions) -> one spiking Session per file, with NLB's own held-out units and splits.

The files are read with ``nlb_tools.nwb_interface.NWBDataset`` (the benchmark's reader)
and rebinned with its ``resample``, so the Session's counts are the very bins
``nlb_tools.make_tensors`` cuts its evaluation tensors from. The fields used, as
``nlb_tools`` reads them:

- units ``heldout`` (bool): NLB's held-out units, loaded as the ``heldout_spikes`` field;
  the rest as ``spikes``. Kept as the neuron column ``nlb_heldout``.
- trials ``split`` ("train" / "val" / "test" / "none"): NLB's trial split, kept as the
  trial column ``nlb_split``; ``move_onset_time`` is the align time of MC_Maze's
  evaluation window (``make_tensors.PARAMS[...]["eval_make_params"]``: -250..+450 ms).
- ``obs_intervals`` of the units: time outside them is NaN in ``NWBDataset.data``.
- behaviour TimeSeries on the 1 kHz grid (``hand_vel`` ...), one column per component.

How neurossl's split step uses them (``neurossl.data.make_splits``): NLB's held-out units
are the co-smoothing held-out neurons; NLB's "val" trials become neurossl's "test"
windows (the trials NLB's local evaluation scores); NLB's "train" trials are divided
into neurossl's "train" and "valid" windows; "test" and "none" trials (no held-out spikes
in the file) get no window. A dataset of one NLB recording is both its pretraining and
its held-out session (:func:`single_recording`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import neurossl
from neurossl.data.hashing import sha256_file
from neurossl.data.nwb_fields import NWBFormatError, warn_assumed
from neurossl.data.session import Session
from neurossl.data.splits import Windows

#: DANDI id -> the dataset name nlb_tools (make_tensors.PARAMS, evaluation.evaluate) uses.
NLB_DANDISETS = {
    "000128": "mc_maze",
    "000138": "mc_maze_large",
    "000139": "mc_maze_medium",
    "000140": "mc_maze_small",
}
#: Neuron and trial columns that carry NLB's own assignment into the Session.
HELDOUT_COLUMN = "nlb_heldout"
SPLIT_COLUMN = "nlb_split"
TRIAL_ID_COLUMN = "nlb_trial_id"
NLB_SPLITS = ("train", "val", "test", "none")
#: nlb_tools reads every file at 1 ms; its submission bin widths are 5 and 20 ms.
NLB_BIN_MS = (5, 20)


@dataclass(frozen=True)
class NLBOptions:
    #: Trial column of the align time (MC_Maze's evaluation window is around it).
    align_field: str = "move_onset_time"
    #: Behaviour fields of NWBDataset.data kept as Session behaviour (NaN where missing).
    behavior_fields: tuple[str, ...] = ("hand_vel",)
    #: nlb_tools' dataset name (``mc_maze`` ...) for the export; unset: from the dandiset.
    benchmark: str | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "nlb") -> NLBOptions:
        known = {"align_field", "behavior_fields", "benchmark"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(known)}")
        values = dict(values)
        if "behavior_fields" in values:
            values["behavior_fields"] = tuple(values["behavior_fields"])
        options = cls(**values)
        if options.benchmark is not None and options.benchmark not in NLB_DANDISETS.values():
            raise ValueError(
                f"{where}.benchmark must be one of {sorted(NLB_DANDISETS.values())}, "
                f"got {options.benchmark!r}"
            )
        return options


def nlb_bin_ms(spike_bin_size: float, path: Path | str = "preprocess.spike_bin_size") -> int:
    """The bin width in whole ms NLB scores at (5 or 20), from seconds."""
    ms = round(spike_bin_size * 1000)
    if ms not in NLB_BIN_MS or not np.isclose(ms / 1000, spike_bin_size):
        raise ValueError(
            f"{path}: spike_bin_size {spike_bin_size} s; NLB scores 5 or 20 ms bins "
            f"(set preprocess.spike_bin_size to 0.005 or 0.02)"
        )
    return ms


def load_nlb_dataset(nwb_path: str | Path, bin_ms: int) -> Any:
    """``nlb_tools``' NWBDataset of one file, rebinned to ``bin_ms`` by nlb_tools itself."""
    from nlb_tools.nwb_interface import NWBDataset

    path = Path(nwb_path)
    try:
        dataset = NWBDataset(str(path))
    except AttributeError as err:  # nlb_tools reaches for trials, units.heldout, obs_intervals
        raise NWBFormatError(
            path, "trials|units/heldout|units/obs_intervals", f"not in NLB's layout ({err})"
        ) from err
    for field in ("split", "end_time"):
        if field not in dataset.trial_info.columns:
            raise NWBFormatError(path, f"trials/{field}", "missing; NLB files have it")
    if "heldout_spikes" not in dataset.data.columns.get_level_values(0):
        raise NWBFormatError(path, "units/heldout", "no unit is held out; not an NLB train file")
    if bin_ms != dataset.bin_width:
        dataset.resample(bin_ms)
    return dataset


def read_nlb_session(
    nwb_path: str | Path,
    *,
    dataset: str,
    session: str,
    spike_bin_size: float,
    options: NLBOptions,
    source_sha256: str | None = None,
) -> Session:
    """One NLB ``desc-train`` file -> a validated spiking Session at NLB's bins."""
    path = Path(nwb_path)
    bin_ms = nlb_bin_ms(spike_bin_size)
    nlb = load_nlb_dataset(path, bin_ms)
    heldin = nlb.data["spikes"]
    heldout = nlb.data["heldout_spikes"]
    counts = np.concatenate([heldin.to_numpy(), heldout.to_numpy()], axis=1).astype(np.float32)
    gaps = ~np.isfinite(counts).all(axis=1)
    if gaps.any():
        warn_assumed(
            path,
            "units/obs_intervals",
            f"{int(gaps.sum())} of {gaps.size} bins outside the observed intervals set to 0 "
            "spikes (NLB's windows lie inside them)",
        )
        counts[gaps] = 0.0
    ids = [str(u) for u in heldin.columns] + [str(u) for u in heldout.columns]
    neurons = pd.DataFrame(
        {
            "id": ids,
            "region": "unknown",
            "depth": np.nan,
            "cre_line": "",
            HELDOUT_COLUMN: np.r_[np.zeros(heldin.shape[1], bool), np.ones(heldout.shape[1], bool)],
        }
    )
    result = Session(
        activity=counts,
        modality="spikes",
        bin_size=bin_ms / 1000.0,
        t0=float(nlb.data.index[0].total_seconds()),
        neurons=neurons,
        trials=nlb_trials(nlb.trial_info, options.align_field, path),
        behavior=np.empty((counts.shape[0], 0), dtype=np.float32),
        behavior_names=[],
        meta={
            "dataset": dataset,
            "session": session,
            "subject": _subject(path, session),
            "source_path": str(path),
            "source_sha256": source_sha256 or sha256_file(path),
            "software_version": getattr(neurossl, "__version__", "0.1.0"),
            "nlb_bin_ms": str(bin_ms),
        },
    )
    names, values = _behavior(nlb, options.behavior_fields, path)
    result.behavior, result.behavior_names = values, names
    result.validate(where=str(path))
    return result


def nlb_trials(trial_info: pd.DataFrame, align_field: str, path: Path) -> pd.DataFrame:
    """Session trials (seconds) with NLB's split and trial id; other numeric columns kept."""
    if align_field not in trial_info.columns:
        raise NWBFormatError(path, f"trials/{align_field}", "missing (split.align time)")
    splits = trial_info["split"].astype(str).to_numpy()
    unknown = sorted(set(splits) - set(NLB_SPLITS))
    if unknown:
        raise NWBFormatError(path, "trials/split", f"values {unknown}; expected {NLB_SPLITS}")
    out = pd.DataFrame(
        {
            "start": _seconds(trial_info["start_time"]),
            "stop": _seconds(trial_info["end_time"]),
            "align": _seconds(trial_info[align_field]),
            SPLIT_COLUMN: splits.astype(object),
            TRIAL_ID_COLUMN: trial_info["trial_id"].to_numpy(dtype=np.int64),
        }
    )
    for column in trial_info.columns:
        if column in ("trial_id", "start_time", "end_time", "split", align_field):
            continue
        values = trial_info[column]
        if pd.api.types.is_timedelta64_dtype(values):
            out[column] = _seconds(values)
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = values.to_numpy(dtype=np.float64)
    return out


def _seconds(values: pd.Series) -> np.ndarray:
    return values.dt.total_seconds().to_numpy(dtype=np.float64)


def _behavior(nlb: Any, fields: tuple[str, ...], path: Path) -> tuple[list[str], np.ndarray]:
    present = set(nlb.data.columns.get_level_values(0))
    names, columns = [], []
    for field in fields:
        if field not in present:
            warn_assumed(path, f"processing/*/{field}", "missing; no such behaviour column")
            continue
        frame = nlb.data[field]
        for component in frame.columns:
            names.append(f"{field}_{component}")
            columns.append(frame[component].to_numpy(dtype=np.float32))
    n_bins = nlb.data.shape[0]
    values = np.stack(columns, axis=1) if columns else np.empty((n_bins, 0), np.float32)
    return names, values.astype(np.float32)


def _subject(path: Path, session: str) -> str:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        subject = io.read().subject
    if subject is None or not subject.subject_id:
        warn_assumed(path, "general/subject/subject_id", f"missing; subject = {session!r}")
        return session
    return str(subject.subject_id)


def nlb_windows(
    trials: pd.DataFrame,
    extent: tuple[float, float],
    pre: float,
    post: float,
    fractions: Mapping[str, float],
    rng: np.random.Generator,
    grid: tuple[float, float],
) -> Windows:
    """One window per NLB train/val trial, split as the file says (see the module doc).

    NLB's "val" trials are neurossl's "test" windows; its "train" trials are divided into
    "train" and "valid" in the ratio of ``fractions`` train : valid (``test`` is unused:
    the file fixes the scored trials). ``grid`` (t0, bin size): a window starts at the
    first bin whose left edge is at or after align - pre, the bin NLB's
    ``make_trial_data`` starts at, so neurossl scores NLB's very bins.
    """
    if pre < 0 or post <= 0:
        raise ValueError(f"trial window needs pre >= 0 and post > 0, got pre={pre}, post={post}")
    t0, bin_size = grid
    align = trials["align"].to_numpy(dtype=np.float64)
    nlb_split = trials[SPLIT_COLUMN].astype(str).to_numpy()
    first_bin = np.ceil(np.round((align - pre - t0) / bin_size, 6))
    start = t0 + first_bin * bin_size
    stop = start + round((pre + post) / bin_size) * bin_size
    inside = np.isfinite(align) & (start >= extent[0]) & (stop <= extent[1])
    rows = np.flatnonzero(inside & np.isin(nlb_split, ("train", "val")))
    split = np.where(nlb_split[rows] == "val", "test", "train").astype(object)
    train = np.flatnonzero(split == "train")
    share = float(fractions["valid"]) / (float(fractions["train"]) + float(fractions["valid"]))
    n_valid = int(np.floor(share * train.size))
    split[train[rng.permutation(train.size)[:n_valid]]] = "valid"
    missing = [name for name in ("train", "test") if not (split == name).any()]
    if missing:
        raise ValueError(
            f"NLB trials give no {missing} window of [-{pre}, +{post}] s inside {extent}; "
            "the file needs 'train' and 'val' trials in trials/split"
        )
    return Windows(start[rows], stop[rows], split, rows.astype(np.int64))


def single_recording(by_session: Mapping[str, Mapping[str, Session]]) -> bool:
    """Whether a dataset is one NLB recording (one session whose trials carry NLB splits)."""
    if len(by_session) != 1:
        return False
    sessions = next(iter(by_session.values())).values()
    return all(SPLIT_COLUMN in s.trials.columns for s in sessions)
