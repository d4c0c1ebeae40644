"""Continuous behaviour (wheel, running, pupil, ...) from NWB behaviour modules.

Each variable is kept with its own timestamps; ``nwb.py`` resamples it onto a Session's
grid. Event-like containers (BehavioralEvents) are skipped: interpolating between
events would invent a signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pynwb import NWBFile, TimeSeries
from pynwb.behavior import BehavioralEvents

from neurossl.data.nwb_fields import NWBFormatError, sample_times, snake_case

#: Processing modules (lower-cased) that hold behaviour: NWB's standard name and the
#: Allen SDK's separate running module.
BEHAVIOR_MODULES = ("behavior", "behaviour", "running")


@dataclass(frozen=True)
class Signal:
    name: str
    times: np.ndarray
    values: np.ndarray  # float64 [n_samples]


def read_behavior(nwbfile: NWBFile, path: Path) -> list[Signal]:
    signals: dict[str, Signal] = {}
    for module in nwbfile.processing.values():
        if module.name.lower() not in BEHAVIOR_MODULES:
            continue
        for series, field in _series(module):
            for signal in _signals(series, path, field):
                if signal.name in signals:
                    raise NWBFormatError(path, field, f"a second variable named {signal.name!r}")
                signals[signal.name] = signal
    return list(signals.values())


def _series(module: object) -> list[tuple[TimeSeries, str]]:
    found = []
    for interface in module.data_interfaces.values():
        base = f"processing/{module.name}/{interface.name}"
        if isinstance(interface, TimeSeries):
            found.append((interface, base))
        elif not isinstance(interface, BehavioralEvents):
            for attribute in ("time_series", "spatial_series"):
                for series in getattr(interface, attribute, {}).values():
                    found.append((series, f"{base}/{series.name}"))
    return found


def _signals(series: TimeSeries, path: Path, field: str) -> list[Signal]:
    values = np.asarray(series.data[:])
    if values.dtype.kind not in "biuf" or values.ndim not in (1, 2) or values.shape[0] == 0:
        return []  # not a numeric time series (e.g. text annotations)
    times = sample_times(series, path, field)
    name = snake_case(series.name)
    values = values.astype(np.float64)
    if values.ndim == 1 or values.shape[1] == 1:
        return [Signal(name, times, values.reshape(-1))]
    return [Signal(f"{name}_{k}", times, values[:, k]) for k in range(values.shape[1])]
