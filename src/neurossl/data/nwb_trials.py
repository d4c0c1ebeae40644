"""The NWB trials table as the Session's trials: start, stop, align and label columns.

Labs name the stimulus onset differently (``stim_on_time``, IBL's ``stimOn_times``, ...);
it becomes ``align``, falling back to the trial start when no onset column exists. Every
other scalar column is kept as a label under its lower_snake_case name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hdmf.common import VectorIndex
from pynwb import NWBFile

from neurossl.data.nwb_fields import NWBFormatError, snake_case, texts

#: Stimulus-onset columns (after snake_case), in order of preference.
ALIGN_COLUMNS = (
    "stim_on_time",
    "stim_on_times",
    "stimulus_on_time",
    "stimulus_onset_time",
    "stimulus_onset",
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
        if not np.isfinite(columns[key].astype(np.float64)).all():
            raise NWBFormatError(path, f"trials/{key}", "contains NaN or inf")
    start = columns.pop("start_time").astype(np.float64)
    stop = columns.pop("stop_time").astype(np.float64)
    align_key = next((k for k in ALIGN_COLUMNS if k in columns), None)
    align = columns.pop(align_key).astype(np.float64) if align_key else start.copy()
    return pd.DataFrame({"start": start, "stop": stop, "align": align, **columns})


def _is_text(values: object) -> bool:
    kind = np.asarray(values).dtype.kind
    return kind in ("O", "S", "U")
