"""The NWB trials table as the Session's trials: start, stop, align and label columns.

Labs name the stimulus onset differently (``stim_on_time``, IBL's ``stimOn_times``, ...);
it becomes ``align``, falling back to the trial start when no onset column exists. Every
other scalar column is kept as a label under its lower_snake_case name.

Some writers leave ``stop_time`` NaN (MatNWB exports, pynapple): a trial then ends where
the next one starts; the last one at its align time plus the median align-to-stop span of
the trials that have a stop (the median start-to-start interval if none has), logged once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hdmf.common import VectorIndex
from pynwb import NWBFile

from neurossl.data.nwb_fields import NWBFormatError, snake_case, texts, warn_assumed

#: Stimulus-onset columns (after snake_case), in order of preference.
ALIGN_COLUMNS = (
    "stim_on_time",
    "stim_on_times",
    "stimulus_on_time",
    "stimulus_onset_time",
    "stimulus_onset",
    # IBL's desc-processed files (ibl_to_nwb _brainwide_map_trials_interface.py).
    "gabor_stimulus_onset_time",
)


def read_trials(nwbfile: NWBFile, path: Path) -> pd.DataFrame:
    trials = nwbfile.trials
    if trials is None or len(trials) == 0:
        return pd.DataFrame({"start": [], "stop": [], "align": []})
    columns: dict[str, np.ndarray] = {}
    for name in trials.colnames:
        column = trials[name]
        if isinstance(column, VectorIndex):
            continue  # ragged (e.g. per-trial event lists): not a per-trial label
        values = column.data[:]
        if np.ndim(values) != 1:
            continue
        key = snake_case(name)
        if key in columns:
            raise NWBFormatError(path, f"trials/{name}", f"clashes with another column as {key!r}")
        columns[key] = texts(values) if _is_text(values) else np.asarray(values)
    for key in ("start_time", "stop_time"):
        if key not in columns:
            raise NWBFormatError(path, f"trials/{key}", "missing")
    start = columns.pop("start_time").astype(np.float64)
    if not np.isfinite(start).all():
        raise NWBFormatError(path, "trials/start_time", "contains NaN or inf")
    stop = columns.pop("stop_time").astype(np.float64)
    align_key = next((k for k in ALIGN_COLUMNS if k in columns), None)
    align = columns.pop(align_key).astype(np.float64) if align_key else start.copy()
    if not np.isfinite(stop).all():
        stop = _fill_stops(start, stop, align, path)
    out = pd.DataFrame({"start": start, "stop": stop, "align": align, **columns})
    # Which column was the onset, for layout readers that require a specific one.
    out.attrs["align_column"] = align_key or "start_time"
    return out


def _fill_stops(start: np.ndarray, stop: np.ndarray, align: np.ndarray, path: Path) -> np.ndarray:
    """NaN stops -> next trial's start; the last -> align + the typical align-to-stop span."""
    if np.isinf(stop).any():
        raise NWBFormatError(path, "trials/stop_time", "contains inf")
    if (np.diff(start) < 0).any():
        raise NWBFormatError(
            path, "trials/stop_time", "has NaN entries and the trials are not in start order"
        )
    filled = stop.copy()
    missing = np.isnan(stop)
    filled[:-1][missing[:-1]] = start[1:][missing[:-1]]
    if missing[-1]:
        base = align[-1] if np.isfinite(align[-1]) else start[-1]
        known = np.isfinite(stop) & np.isfinite(align)
        if known.any():
            span = float(np.median(stop[known] - align[known]))
        elif start.size > 1:
            span = float(np.median(np.diff(start)))
        else:
            raise NWBFormatError(
                path, "trials/stop_time", "NaN for the only trial; its end cannot be inferred"
            )
        filled[-1] = base + max(span, 0.0)
    warn_assumed(
        path,
        "trials/stop_time",
        f"{int(missing.sum())} of {stop.size} NaN; took the next trial's start "
        "(the last trial: align + median align-to-stop span)",
    )
    return filled


def _is_text(values: object) -> bool:
    kind = np.asarray(values).dtype.kind
    return kind in ("O", "S", "U")
