"""Typed access to NWB fields, failing with the file and the field in the message.

Real NWB files differ in what they fill in; the readers ask for a field through these
helpers so a missing or malformed one stops preprocessing with a message a user can act
on, instead of a KeyError deep in pynwb or a silently wrong Session.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

_LOG = logging.getLogger("neurossl.data")


class NWBFormatError(ValueError):
    """An NWB file lacks, or carries a malformed, field the Session needs."""

    def __init__(self, path: str | Path, field: str, problem: str) -> None:
        super().__init__(f"{path}: field '{field}': {problem}")
        self.path = str(path)
        self.field = field


def warn_assumed(path: str | Path, field: str, assumption: str) -> None:
    """One warning line for a harmless deviation that was read under an assumption.

    Real files are read where the intent is unambiguous; the user sees in the rule's log
    which file and field deviated and what the reader took instead.
    """
    _LOG.warning("%s: field '%s': %s", path, field, assumption)


def texts(values: object) -> np.ndarray:
    """An object array of str from str, bytes or h5py string data."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def snake_case(name: str) -> str:
    """``stimOn_times`` -> ``stim_on_times``, ``RunningSpeed`` -> ``running_speed``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def sample_times(series: object, path: Path, field: str) -> np.ndarray:
    """Timestamps of every sample of a TimeSeries, from ``timestamps`` or ``rate``."""
    n = int(series.data.shape[0])
    if series.timestamps is not None:
        times = np.asarray(series.timestamps[:], dtype=np.float64)
        if times.shape != (n,):
            raise NWBFormatError(
                path, f"{field}/timestamps", f"has {times.shape} entries for {n} samples"
            )
        if not np.isfinite(times).all():
            raise NWBFormatError(path, f"{field}/timestamps", "contains NaN or inf")
        if n > 1 and not (np.diff(times) > 0).all():
            raise NWBFormatError(path, f"{field}/timestamps", "is not strictly increasing")
        return times
    if series.rate is None or not series.rate > 0:
        raise NWBFormatError(
            path, f"{field}/timestamps", "missing, and no positive 'starting_time'/'rate' either"
        )
    start = 0.0 if series.starting_time is None else float(series.starting_time)
    return start + np.arange(n) / float(series.rate)


def regular_grid(times: np.ndarray) -> tuple[float, float, bool]:
    """(t0, step, regular) of sample times; regular when no sample is off by half a step.

    Acquisition clocks jitter, so timestamps are never exactly regular; a gap (dropped
    frames) is what breaks the ``t0 + i * step`` assumption.
    """
    if times.size < 2:
        raise ValueError("a time grid needs at least two samples")
    step = float(np.median(np.diff(times)))
    drift = np.abs(times - (times[0] + np.arange(times.size) * step))
    return float(times[0]), step, bool(drift.max() <= 0.5 * step)
