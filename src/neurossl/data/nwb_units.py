"""The NWB Units table as flat spike arrays plus a neuron table.

Spike times are read from the pynwb-exposed dataset in one call and then checked in
cache-sized pieces, so the checks add little to the read. Where a unit's region,
depth or cell type lives varies between labs, so each is looked up in the Units table
first, then at the unit's electrode (its peak channel where the file names one), then
at its electrode group's ``location``; the last two log one warning naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from hdmf.common import DynamicTableRegion, VectorIndex
from pynwb import NWBFile

from neurossl.data.nwb_fields import NWBFormatError, texts, warn_assumed
from neurossl.data.session import all_finite

if TYPE_CHECKING:
    import h5py

#: Units/electrodes columns holding a brain region, in order of preference.
REGION_COLUMNS = ("location", "brain_area", "region", "ecephys_structure_acronym")
#: Units/electrodes columns holding a depth or position along the probe (um); IBL's
#: converter writes ``distance_from_probe_tip_um`` (ibl_to_nwb _ibl_sorting_interface.py).
DEPTH_COLUMNS = ("distance_from_probe_tip_um", "depth", "rel_y")
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
    linked = _electrode_rows(units, nwbfile, path)
    cre = (
        texts(units["cre_line"].data[:])
        if "cre_line" in units.colnames
        else np.full(ids.size, "unknown", dtype=object)
    )
    neurons = pd.DataFrame(
        {
            "id": texts(ids),
            "region": _regions(units, linked, path),
            "depth": _depths(units, linked),
            "cre_line": cre,
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
    unsorted: set[int] = set()
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
            positions = low + np.flatnonzero(back)
            unsorted.update(np.searchsorted(ends, positions, side="right").tolist())
    if unsorted:
        # Exporters that concatenate per-trial spike lists (e.g. DANDI 000006's ALM files)
        # leave each unit's times out of order; the set of spikes is intact, so sorting
        # recovers the train exactly.
        starts = np.concatenate(([0], ends[:-1]))
        for unit in sorted(unsorted):
            times[starts[unit] : ends[unit]].sort()
        first_ids = ", ".join(str(ids[u]) for u in sorted(unsorted)[:3])
        warn_assumed(
            path,
            field,
            f"times not sorted within {len(unsorted)} unit(s) (ids {first_ids}...); "
            "sorted them, assuming per-trial concatenation",
        )
    return times


def _electrode_rows(units: Any, nwbfile: NWBFile, path: Path) -> tuple[Any, np.ndarray] | None:
    """(electrodes table, row of each unit's electrode there; -1 for none), or None.

    The peak channel is the electrode that describes a unit: ``max_electrode`` (IBL's
    converter writes it as an index into the electrodes table) when present. Otherwise the
    first electrode listed in ``electrodes``, which may be ragged (a VectorIndex over a
    DynamicTableRegion, the NWB schema's form) or one region row per unit.
    """
    n_units = len(units.id)
    if "max_electrode" in units.colnames:
        column = units["max_electrode"]
        table = column.table if isinstance(column, DynamicTableRegion) else nwbfile.electrodes
        if table is None:
            raise NWBFormatError(path, "units/max_electrode", "set but the file has no electrodes")
        rows = np.asarray(column.data[:], dtype=np.int64).reshape(-1)
        _check_rows(rows, len(table), path, "units/max_electrode")
        return table, rows
    if "electrodes" not in units.colnames:
        return None
    column = units["electrodes"]
    if isinstance(column, VectorIndex):
        region = column.target
        targets = np.asarray(region.data[:], dtype=np.int64)
        ends = np.asarray(column.data[:], dtype=np.int64)
        starts = np.r_[0, ends[:-1]]
        rows = np.full(n_units, -1, dtype=np.int64)
        has = ends > starts
        rows[has] = targets[starts[has]]
    elif isinstance(column, DynamicTableRegion):
        region = column
        rows = np.asarray(column.data[:], dtype=np.int64).reshape(-1)
    else:
        raise NWBFormatError(
            path, "units/electrodes", f"is a {type(column).__name__}, expected a table region"
        )
    _check_rows(rows, len(region.table), path, "units/electrodes")
    return region.table, rows


def _check_rows(rows: np.ndarray, n_rows: int, path: Path, field: str) -> None:
    if rows.size and (rows.max() >= n_rows or rows.min() < -1):
        raise NWBFormatError(path, field, f"points outside the electrodes table ({n_rows} rows)")


def _regions(units: Any, linked: tuple[Any, np.ndarray] | None, path: Path) -> np.ndarray:
    """Each unit's region: a Units column, else its electrode's, else its group's location."""
    n = len(units.id)
    for column in REGION_COLUMNS:
        if column in units.colnames:
            return texts(units[column].data[:])
    if linked is not None:
        return _electrode_regions(*linked, path, "electrodes")
    if "electrode_group" in units.colnames:
        column = units["electrode_group"]
        if isinstance(column, DynamicTableRegion):
            # Some writers link the group as a region of the electrodes table.
            rows = np.asarray(column.data[:], dtype=np.int64).reshape(-1)
            _check_rows(rows, len(column.table), path, "units/electrode_group")
            return _electrode_regions(column.table, rows, path, "units/electrode_group")
        warn_assumed(
            path, "units/electrode_group", "no electrodes column; region from the group's location"
        )
        return _group_locations(column.data[:])
    warn_assumed(path, "units", "no region column, electrodes or electrode_group; region unknown")
    return np.full(n, "unknown", dtype=object)


def _electrode_regions(table: Any, rows: np.ndarray, path: Path, via: str) -> np.ndarray:
    for column in REGION_COLUMNS:
        if column in table.colnames:
            return _pick(texts(table[column].data[:]), rows, "unknown")
    if "group" in table.colnames:
        warn_assumed(path, f"{via}/location", "missing; region from each electrode's group")
        return _pick(_group_locations(table["group"].data[:]), rows, "unknown")
    warn_assumed(path, f"{via}/location", "missing and no group; region unknown")
    return np.full(rows.size, "unknown", dtype=object)


def _group_locations(groups: Any) -> np.ndarray:
    """The ``location`` of each ElectrodeGroup (a text if the file stored names only)."""
    return texts([getattr(g, "location", g) or "" for g in groups])


def _pick(values: np.ndarray, rows: np.ndarray, missing: object) -> np.ndarray:
    out = np.full(rows.size, missing, dtype=values.dtype)
    has = rows >= 0
    out[has] = values[rows[has]]
    return out


def _depths(units: Any, linked: tuple[Any, np.ndarray] | None) -> np.ndarray:
    for column in DEPTH_COLUMNS:
        if column in units.colnames:
            return np.asarray(units[column].data[:], dtype=np.float64).reshape(-1)
    if linked is not None:
        table, rows = linked
        for column in DEPTH_COLUMNS:
            if column in table.colnames:
                values = np.asarray(table[column].data[:], dtype=np.float64).reshape(-1)
                return _pick(values, rows, np.nan)
    return np.full(len(units.id), np.nan)
