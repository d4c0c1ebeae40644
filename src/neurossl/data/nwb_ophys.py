"""Calcium traces from NWB ophys: one RoiResponseSeries, its ROIs and its frame grid.

DfOverF is preferred over Fluorescence because the Session holds dF/F. Regions, depths
and Cre lines are read from PlaneSegmentation columns, falling back to the imaging
plane's location and the subject's genotype (the Allen Brain Observatory layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pynwb import NWBFile
from pynwb.ophys import DfOverF, Fluorescence, RoiResponseSeries

from neurossl.data.nwb_fields import NWBFormatError, regular_grid, sample_times, texts
from neurossl.data.resample import interpolate

REGION_COLUMNS = ("location", "area", "brain_area", "targeted_structure")
DEPTH_COLUMNS = ("depth", "imaging_depth")
#: Name of the series to take when a container holds several (e.g. suite2p's Neuropil).
PREFERRED_SERIES = "RoiResponseSeries"


@dataclass(frozen=True)
class Traces:
    data: np.ndarray  # float32 [T, N] on t0 + i * frame_period
    t0: float
    frame_period: float
    neurons: pd.DataFrame  # id, region, depth, cre_line
    predictable: np.ndarray | None


def read_traces(nwbfile: NWBFile, path: Path) -> Traces:
    series, field = _find_series(nwbfile, path)
    data = np.asarray(series.data[:], dtype=np.float32)
    rois = series.rois.table
    selected = np.asarray(series.rois.data[:], dtype=np.int64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[1] != selected.size:
        raise NWBFormatError(
            path, f"{field}/data", f"shape {data.shape} does not match {selected.size} ROIs"
        )
    bad = ~np.isfinite(data)
    if bad.any():
        roi = np.flatnonzero(bad.any(axis=0))[0]
        raise NWBFormatError(
            path, f"{field}/data", f"{int(bad.sum())} NaN/inf values (first in ROI column {roi})"
        )
    times = sample_times(series, path, field)
    if times.size < 2:
        raise NWBFormatError(path, f"{field}/data", f"only {times.size} frame(s)")
    if series.timestamps is None:  # exact clock: keep 1/rate rather than a float median
        t0, period, regular = float(times[0]), 1.0 / float(series.rate), True
    else:
        t0, period, regular = regular_grid(times)
    if not regular:
        # Dropped frames: put the traces back on a regular clock spanning the recording.
        grid = t0 + np.arange(int(np.floor((times[-1] - t0) / period)) + 1) * period
        data = interpolate(times, data, grid).astype(np.float32)
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
    return Traces(data, t0, period, neurons, predictable)


def _find_series(nwbfile: NWBFile, path: Path) -> tuple[RoiResponseSeries, str]:
    found: dict[type, list[tuple[RoiResponseSeries, str]]] = {DfOverF: [], Fluorescence: []}
    for module in nwbfile.processing.values():
        for interface in module.data_interfaces.values():
            for kind in found:
                if isinstance(interface, kind):
                    found[kind].extend(
                        (s, f"processing/{module.name}/{interface.name}/{s.name}")
                        for s in interface.roi_response_series.values()
                    )
    candidates = found[DfOverF] or found[Fluorescence]
    if not candidates:
        raise NWBFormatError(
            path, "processing/*/DfOverF|Fluorescence", "no RoiResponseSeries (no calcium data)"
        )
    if len(candidates) > 1:
        preferred = [c for c in candidates if c[0].name == PREFERRED_SERIES]
        if len(preferred) != 1:
            names = [field for _, field in candidates]
            raise NWBFormatError(
                path, names[0], f"ambiguous: several RoiResponseSeries {names}; expected one"
            )
        return preferred[0]
    return candidates[0]


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
