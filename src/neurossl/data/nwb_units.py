"""The NWB Units table as flat spike arrays plus a neuron table.

Spike times are read from the pynwb-exposed dataset in one call and then checked in
cache-sized pieces, so the checks add little to the read. Where a unit's region,
depth or cell type lives varies between labs, so each is looked up in the Units table
first and in its electrodes second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pynwb import NWBFile

from neurossl.data.nwb_fields import NWBFormatError, texts
from neurossl.data.session import all_finite

if TYPE_CHECKING:
    import h5py

#: Units/electrodes columns holding a brain region, in order of preference.
REGION_COLUMNS = ("location", "brain_area", "region", "ecephys_structure_acronym")
#: Units/electrodes columns holding a depth or position along the probe (um).
DEPTH_COLUMNS = ("depth", "rel_y")
#: Spike times checked per piece (1 MB of float64, well inside L2).
_CHECK_PIECE = 1 << 17


@dataclass(frozen=True)
class SpikeTrains:
    times: np.ndarray  # flat float64, sorted within each unit
    ends: np.ndarray  # NWB ragged index: end of each unit's spikes in ``times``
    neurons: pd.DataFrame  # id, region, depth, cre_line
    predictable: np.ndarray | None  # bool [N] where the file says (synthetic data)


def read_units(nwbfile: NWBFile, path: Path) -> SpikeTrains:
    units = nwbfile.units
    if units is None or "spike_times" not in units.colnames:
        raise NWBFormatError(path, "units/spike_times", "no Units table with spike times")
    index = units["spike_times"]
    ends = np.asarray(index.data[:], dtype=np.int64)
    ids = np.asarray(units.id.data[:])
    times = _read_spike_times(index.target.data, ends, ids, path)
    electrode_row = _first_electrode(units, ends.size)
    electrodes = units["electrodes"].target.table if electrode_row is not None else None
    neurons = pd.DataFrame(
        {
            "id": texts(ids),
            "region": _lookup(units, electrodes, electrode_row, REGION_COLUMNS, "unknown"),
            "depth": _lookup(units, electrodes, electrode_row, DEPTH_COLUMNS, np.nan),
            "cre_line": _lookup(units, None, None, ("cre_line",), "unknown"),
        }
    )
    neurons["depth"] = neurons["depth"].astype(np.float64)
    predictable = (
        np.asarray(units["predictable"].data[:], dtype=bool)
        if "predictable" in units.colnames
        else None
    )
    return SpikeTrains(times=times, ends=ends, neurons=neurons, predictable=predictable)


def _read_spike_times(
    data: h5py.Dataset | np.ndarray, ends: np.ndarray, ids: np.ndarray, path: Path
) -> np.ndarray:
    """All spike times as float64, read in one call, then checked piece by piece.

    One bulk read costs what a raw h5py read costs; reading in 1 MB slices paid h5py's
    selection set-up per slice (read + checks 2.1x the raw read for 24 M spikes, now 1.5x;
    benchmarks/RESULTS.md). The checks (finite, sorted within units) then run on
    cache-sized pieces into one reused mask, so they are a few fast passes over cached
    data rather than whole-array passes allocating ~9 bytes per spike of temporaries.
    """
    field = "units/spike_times"
    n_spikes = len(data)
    if ends.size == 0:
        raise NWBFormatError(path, field, "the Units table has no units")
    if ends.size != ids.size:
        raise NWBFormatError(path, f"{field}_index", f"{ends.size} entries for {ids.size} units")
    if (np.diff(ends, prepend=0) < 0).any() or ends[-1] != n_spikes:
        raise NWBFormatError(
            path,
            f"{field}_index",
            f"ragged index is inconsistent (not non-decreasing or does not end at "
            f"{n_spikes} spikes)",
        )
    times = np.empty(n_spikes, dtype=np.float64)
    if hasattr(data, "read_direct"):
        if n_spikes:
            data.read_direct(times)
    else:
        times[:] = data
    steps_back = np.empty(_CHECK_PIECE, dtype=bool)
    for first in range(0, n_spikes, _CHECK_PIECE):
        stop = min(n_spikes, first + _CHECK_PIECE)
        if not all_finite(times[first:stop]):
            raise NWBFormatError(path, field, "contains NaN or inf")
        # Spike low + k earlier than the spike before it (the one before the piece too, so
        # steps across pieces count), except where a unit starts.
        low = max(1, first)
        back = np.less(times[low:stop], times[low - 1 : stop - 1], out=steps_back[: stop - low])
        back[ends[np.searchsorted(ends, low) : np.searchsorted(ends, stop)] - low] = False
        if back.any():
            unit = int(np.searchsorted(ends, low + int(np.argmax(back)), side="right"))
            raise NWBFormatError(path, field, f"not sorted within unit id {ids[unit]}")
    return times


def _first_electrode(units: object, n_units: int) -> np.ndarray | None:
    """Row in the electrodes table of each unit's first electrode (-1 if it has none)."""
    if "electrodes" not in units.colnames:
        return None
    index = units["electrodes"]
    rows = np.asarray(index.target.data[:], dtype=np.int64)
    ends = np.asarray(index.data[:], dtype=np.int64)
    starts = np.r_[0, ends[:-1]]
    first = np.full(n_units, -1, dtype=np.int64)
    has = ends > starts
    first[has] = rows[starts[has]]
    return first


def _lookup(
    units: object,
    electrodes: object | None,
    electrode_row: np.ndarray | None,
    columns: tuple[str, ...],
    missing: object,
) -> np.ndarray:
    n = len(units.id)
    is_text = isinstance(missing, str)
    for column in columns:
        if column in units.colnames:
            values = units[column].data[:]
            return texts(values) if is_text else np.asarray(values, dtype=np.float64)
    if electrodes is None:
        return np.full(n, missing, dtype=object if is_text else np.float64)
    for column in columns:
        if column in electrodes.colnames:
            values = electrodes[column].data[:]
            values = texts(values) if is_text else np.asarray(values, dtype=np.float64)
            out = np.full(n, missing, dtype=values.dtype)
            has = electrode_row >= 0
            out[has] = values[electrode_row[has]]
            return out
    return np.full(n, missing, dtype=object if is_text else np.float64)
