"""Calcium traces from NWB ophys: the dF/F series, its ROIs and its frame grid.

Labs store the same thing in many places, so the series is chosen by what it is, not
where it sits: a series is dF/F when its container is ``DfOverF`` or its (or its
container's) name says dF/F (current neuroconv puts a series named ``DfOverF`` inside a
``Fluorescence`` container); events, deconvolved spikes, baselines and neuropil are
never taken for a response. Raw fluorescence is never taken for dF/F: when a file has
only raw F, dF/F is computed (see ``dff.py``) and the Session's provenance says so.
A ``calcium_series`` option picks one series by name or path where a file holds several.

Regions, depths and Cre lines come from PlaneSegmentation columns, falling back to the
imaging plane's location and the subject's genotype (the Allen Brain Observatory layout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pynwb import NWBFile
from pynwb.ophys import DfOverF, Fluorescence, RoiResponseSeries

from neurossl.data.dff import BaselineError, dff_from_fluorescence
from neurossl.data.nwb_fields import (
    NWBFormatError,
    regular_grid,
    sample_times,
    texts,
    warn_assumed,
)
from neurossl.data.resample import interpolate

REGION_COLUMNS = ("location", "area", "brain_area", "targeted_structure")
DEPTH_COLUMNS = ("depth", "imaging_depth")
#: Roles of a series, from its own and its container's names (lower case, letters only).
_NOT_A_RESPONSE = re.compile(r"event|deconv|spike|spks|baseline|oasis|denois")
_NEUROPIL = re.compile(r"neuropil|fneu")
_DFF = re.compile(r"dfoverf|deltafoverf|dff|dfof")
#: Raw F that already had neuropil removed (000728's ``Corrected``): subtract nothing more.
_CORRECTED = re.compile(r"corrected|neuropil[- ]subtracted|subtraction of neuropil")
DFF, RAW, NEUROPIL, OTHER = "dF/F", "raw fluorescence", "neuropil", "not a response"


@dataclass(frozen=True)
class Candidate:
    series: RoiResponseSeries
    field: str  # processing/<module>/<container>/<series>
    role: str  # DFF | RAW | NEUROPIL | OTHER

    def describe(self) -> str:
        return f"{self.field} ({self.role})"


@dataclass(frozen=True)
class Traces:
    data: np.ndarray  # float32 [T, N] on t0 + i * frame_period
    t0: float
    frame_period: float
    neurons: pd.DataFrame  # id, region, depth, cre_line
    predictable: np.ndarray | None
    field: str  # the series taken
    provenance: str  # how the dF/F was obtained


def read_traces(nwbfile: NWBFile, path: Path, series_name: str | None = None) -> Traces:
    """The dF/F traces of a file; ``series_name`` picks one series by name or path."""
    candidates = find_candidates(nwbfile)
    chosen = choose_series(candidates, path, series_name)
    series, field = chosen.series, chosen.field
    rois = series.rois.table
    selected = np.asarray(series.rois.data[:], dtype=np.int64)
    data, times = _oriented(series, selected.size, path, field)
    t0, period, data = _on_grid(series, times, data, path, field)
    provenance = f"dF/F as stored in {field}"
    if chosen.role == RAW:
        neuropil = _neuropil_for(chosen, candidates, path)
        warn_assumed(
            path, field, "the file has no dF/F series; computing dF/F from raw fluorescence"
        )
        neuropil_data = None
        if neuropil is not None:
            neuropil_data, neuropil_times = _oriented(
                neuropil.series, selected.size, path, neuropil.field
            )
            neuropil_data = _on_grid(
                neuropil.series, neuropil_times, neuropil_data, path, neuropil.field
            )[2]
            if neuropil_data.shape != data.shape:
                raise NWBFormatError(
                    path,
                    neuropil.field,
                    f"neuropil shape {neuropil_data.shape} differs from {field} {data.shape}",
                )
        data, neuropil_data, selected = _drop_empty_rois(
            data, neuropil_data, selected, rois, path, field
        )
        try:
            result = dff_from_fluorescence(data, neuropil_data, period)
        except BaselineError as err:
            ids = texts(np.asarray(rois.id.data[:])[selected][err.columns])
            if neuropil_data is not None and err.columns.size < data.shape[1] / 2:
                # Subtracting 0.7 x neuropil leaves dim ROIs below zero (suite2p's own
                # classifier marks most of them non-cells): dF/F is undefined for them only.
                warn_assumed(
                    path,
                    field,
                    f"{err.columns.size} ROI(s) have a baseline <= 0 after neuropil "
                    f"subtraction (ids {list(ids[:5])}...); dropped them",
                )
                keep = np.ones(data.shape[1], dtype=bool)
                keep[err.columns] = False
                data, selected = data[:, keep], selected[keep]
                neuropil_data = neuropil_data[:, keep]
                result = dff_from_fluorescence(data, neuropil_data, period)
            else:
                raise NWBFormatError(
                    path,
                    field,
                    f"cannot compute dF/F: baseline <= 0 for ROI id(s) {list(ids[:10])}; raw "
                    "fluorescence has a positive baseline, so this series is likely already "
                    "normalised or denoised (e.g. CNMF's C): store it as dF/F or name another "
                    "series with calcium_series",
                ) from err
        data = result.dff
        provenance = f"{result.method} (F: {field}"
        provenance += f"; neuropil: {neuropil.field})" if neuropil is not None else ")"
    neurons = pd.DataFrame(
        {
            "id": texts(np.asarray(rois.id.data[:])[selected]),
            "region": _region(rois, selected),
            "depth": _column(rois, DEPTH_COLUMNS, selected, np.nan),
            "cre_line": _cre_line(nwbfile, rois, selected),
        }
    )
    neurons["depth"] = neurons["depth"].astype(np.float64)
    predictable = (
        np.asarray(rois["predictable"].data[:], dtype=bool)[selected]
        if "predictable" in rois.colnames
        else None
    )
    return Traces(data, t0, period, neurons, predictable, field, provenance)


def _drop_empty_rois(
    data: np.ndarray,
    neuropil: np.ndarray | None,
    selected: np.ndarray,
    rois: Any,
    path: Path,
    field: str,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Raw F without ROIs that are 0 in every frame (segmentation exports keep such
    placeholders, e.g. suite2p's non-cells); they carry no signal and no baseline."""
    empty = ~np.any(data != 0, axis=0)
    if not empty.any():
        return data, neuropil, selected
    if empty.all():
        raise NWBFormatError(path, field, "every ROI's raw fluorescence is 0 in every frame")
    ids = texts(np.asarray(rois.id.data[:])[selected[empty]])
    warn_assumed(
        path,
        field,
        f"{int(empty.sum())} ROI(s) are 0 in every frame (ids {list(ids[:5])}...); dropped them",
    )
    keep = ~empty
    return data[:, keep], None if neuropil is None else neuropil[:, keep], selected[keep]


def find_candidates(nwbfile: NWBFile) -> list[Candidate]:
    """Every RoiResponseSeries in a DfOverF or Fluorescence container, with its role."""
    found = []
    for module in nwbfile.processing.values():
        for interface in module.data_interfaces.values():
            if not isinstance(interface, (DfOverF, Fluorescence)):
                continue
            for series in interface.roi_response_series.values():
                field = f"processing/{module.name}/{interface.name}/{series.name}"
                found.append(Candidate(series, field, _role(interface, series)))
    return found


def _role(container: DfOverF | Fluorescence, series: RoiResponseSeries) -> str:
    own, parent = _letters(series.name), _letters(container.name)
    if _NOT_A_RESPONSE.search(own) or _NOT_A_RESPONSE.search(parent):
        return OTHER
    if _NEUROPIL.search(own) or _NEUROPIL.search(parent):
        return NEUROPIL
    if isinstance(container, DfOverF) or _DFF.search(own) or _DFF.search(parent):
        return DFF
    return RAW


def _letters(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def choose_series(
    candidates: list[Candidate], path: Path, series_name: str | None = None
) -> Candidate:
    """The series to read: the one named, else the one dF/F series, else the one raw F."""
    listing = "; ".join(c.describe() for c in candidates)
    if not candidates:
        raise NWBFormatError(
            path, "processing/*/DfOverF|Fluorescence", "no RoiResponseSeries (no calcium data)"
        )
    if series_name:
        named = [
            c
            for c in candidates
            if series_name in (c.series.name, c.field, c.field.split("/", 2)[-1])
        ]
        if len(named) != 1:
            found = "no series" if not named else f"{len(named)} series"
            raise NWBFormatError(
                path,
                series_name,
                f"calcium_series names {found}; name one of (by path if names repeat): {listing}",
            )
        if named[0].role in (NEUROPIL, OTHER):
            raise NWBFormatError(
                path, named[0].field, f"is {named[0].role}, not a fluorescence response"
            )
        return named[0]
    for role in (DFF, RAW):
        matches = [c for c in candidates if c.role == role]
        if len(matches) > 1:
            raise NWBFormatError(
                path,
                matches[0].field,
                f"several {role} series; set the dataset's 'calcium_series' option to one "
                f"of: {listing}",
            )
        if matches:
            chosen = matches[0]
            container = chosen.field.split("/")[2]
            if role == DFF and not isinstance(chosen.series.parent, DfOverF):
                warn_assumed(
                    path, chosen.field, f"taken as dF/F by its name (container {container!r})"
                )
            return chosen
    raise NWBFormatError(
        path, candidates[0].field, f"no dF/F or raw fluorescence series among: {listing}"
    )


def _neuropil_for(chosen: Candidate, candidates: list[Candidate], path: Path) -> Candidate | None:
    """The neuropil series of the same ROIs, unless F is already neuropil-corrected."""
    text = f"{chosen.series.name} {chosen.series.description or ''}".lower()
    if _CORRECTED.search(text):
        warn_assumed(path, chosen.field, "already neuropil-corrected (by its name/description)")
        return None
    rois = list(chosen.series.rois.data[:])
    same = [
        c
        for c in candidates
        if c.role == NEUROPIL
        and c.series.rois.table is chosen.series.rois.table
        and list(c.series.rois.data[:]) == rois
    ]
    if len(same) > 1:
        names = [c.field for c in same]
        raise NWBFormatError(path, chosen.field, f"several neuropil series {names} for its ROIs")
    return same[0] if same else None


def _oriented(
    series: RoiResponseSeries, n_rois: int, path: Path, field: str
) -> tuple[np.ndarray, np.ndarray]:
    """(data [T, N], frame times): (ROIs x frames) data transposed where unambiguous."""
    data = np.asarray(series.data[:], dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or n_rois not in data.shape:
        raise NWBFormatError(
            path, f"{field}/data", f"shape {data.shape} does not match {n_rois} ROIs"
        )
    if data.shape[1] != n_rois:
        # suite2p's export writes (ROIs x frames); the ROI count says which axis is which.
        warn_assumed(
            path, f"{field}/data", f"shape {data.shape} read as (ROIs x frames), transposed"
        )
        data = np.ascontiguousarray(data.T)
        times = _times_of(series, data.shape[0], path, field)
    else:
        times = sample_times(series, path, field)
    bad = ~np.isfinite(data)
    if bad.any():
        roi = np.flatnonzero(bad.any(axis=0))[0]
        raise NWBFormatError(
            path, f"{field}/data", f"{int(bad.sum())} NaN/inf values (first in ROI column {roi})"
        )
    if times.size < 2:
        raise NWBFormatError(path, f"{field}/data", f"only {times.size} frame(s)")
    return data, times


def _times_of(series: RoiResponseSeries, n_frames: int, path: Path, field: str) -> np.ndarray:
    """Frame times of a transposed series, whose data's first axis is not time."""
    if series.timestamps is not None:
        times = np.asarray(series.timestamps[:], dtype=np.float64)
        if times.shape != (n_frames,):
            raise NWBFormatError(
                path, f"{field}/timestamps", f"has {times.shape} entries for {n_frames} frames"
            )
        return times
    if series.rate is None or not series.rate > 0:
        raise NWBFormatError(path, f"{field}/timestamps", "missing, and no positive 'rate'")
    start = 0.0 if series.starting_time is None else float(series.starting_time)
    return start + np.arange(n_frames) / float(series.rate)


def _on_grid(
    series: RoiResponseSeries, times: np.ndarray, data: np.ndarray, path: Path, field: str
) -> tuple[float, float, np.ndarray]:
    """(t0, period, data) on a regular frame grid; irregular timestamps are resampled."""
    if series.timestamps is None:  # exact clock: keep 1/rate rather than a float median
        return float(times[0]), 1.0 / float(series.rate), data
    if not (np.diff(times) > 0).all():
        raise NWBFormatError(path, f"{field}/timestamps", "is not strictly increasing")
    t0, period, regular = regular_grid(times)
    if regular:
        return t0, period, data
    # Dropped frames: put the traces back on a regular clock spanning the recording.
    grid = t0 + np.arange(int(np.floor((times[-1] - t0) / period)) + 1) * period
    warn_assumed(
        path,
        f"{field}/timestamps",
        f"irregular; resampled linearly onto a {1 / period:.3f} Hz grid ({grid.size} frames)",
    )
    return t0, period, interpolate(times, data, grid).astype(np.float32)


def _column(
    table: object, columns: tuple[str, ...], selected: np.ndarray, missing: object
) -> np.ndarray:
    for column in columns:
        if column in table.colnames:
            values = table[column].data[:]
            if isinstance(missing, str):
                return texts(values)[selected]
            return np.asarray(values, dtype=np.float64)[selected]
    return np.full(selected.size, missing, dtype=object if isinstance(missing, str) else float)


def _region(rois: object, selected: np.ndarray) -> np.ndarray:
    regions = _column(rois, REGION_COLUMNS, selected, "")
    plane = getattr(rois, "imaging_plane", None)
    fallback = plane.location if plane is not None and plane.location else "unknown"
    regions[regions == ""] = fallback
    return regions


def _cre_line(nwbfile: NWBFile, rois: object, selected: np.ndarray) -> np.ndarray:
    lines = _column(rois, ("cre_line",), selected, "")
    lines[lines == ""] = _genotype_cre(nwbfile)
    return lines


def _genotype_cre(nwbfile: NWBFile) -> str:
    """The Cre driver in a genotype such as ``Sst-IRES-Cre/wt;Ai148(...)/wt``, if any."""
    genotype = nwbfile.subject.genotype if nwbfile.subject is not None else None
    for part in (genotype or "").split(";"):
        allele = part.split("/")[0].strip()
        if "Cre" in allele:
            return allele
    return "unknown"
