"""NWB file -> one Session per modality (the preprocess stage).

A file is opened read-only once; spikes are binned at the requested bin size over the
recording's extent (aligned to multiples of the bin size, so sessions of one dataset
share a grid), calcium stays on its frame grid. Trials, behaviour and, for synthetic
data, ground truth are attached to each. Behaviour and latents are sampled at bin
centres: the value that best represents a bin. Nothing is returned unless every
requested modality was read and validated, so a caller that writes only after this
returns never leaves partial output.

Deviations that are read under an assumption, each logged once with file and field:

- no ``general/subject/subject_id``: the subject is the ``sub-<id>`` folder or file-name
  entity of the file (BIDS/DANDI naming), else the file's ``session_id``, else the
  session name. Held-out-animal splits then treat such sessions as separate animals.
- spike times before the session start (negative times): the grid starts at the session
  start (t = 0), or at the first trial's start where the file's trials begin earlier
  (their clock then runs before 0), and the spikes before that are dropped. A few stray
  early spikes would otherwise put minutes of empty bins in front of the recording.

NWB 1.x files (HDF5 with ``nwb_version`` "NWB-1.x") are refused by name: pynwb reads only
NWB 2, and a guess at their layout would be silently wrong.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from hdmf.build.errors import ConstructError
from pynwb import NWBHDF5IO, NWBFile
from pynwb.ophys import DfOverF, Fluorescence

import neurossl
from neurossl.data.binning import bin_index, bin_spike_times, expected_counts
from neurossl.data.hashing import sha256_file
from neurossl.data.nwb_behavior import Signal, read_behavior
from neurossl.data.nwb_fields import NWBFormatError, regular_grid, sample_times, warn_assumed
from neurossl.data.nwb_ophys import read_traces
from neurossl.data.nwb_trials import read_trials
from neurossl.data.nwb_units import SpikeTrains, read_units
from neurossl.data.regions import full_names_to_acronyms, has_full_names
from neurossl.data.resample import interpolate
from neurossl.data.session import Session
from neurossl.names import MODALITIES

__all__ = ["NWBFormatError", "nwb_to_sessions", "refuse_nwb1"]

#: Processing module and series names of synthetic ground truth (see sources/synthetic.py).
TRUTH_MODULE = "ground_truth"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: BIDS/DANDI subject entity in a folder or file name (``sub-CSHL049``).
_SUBJECT_ENTITY = re.compile(r"(?:^|_)sub-([A-Za-z0-9+-]+)")


def nwb_to_sessions(
    nwb_path: str | Path,
    *,
    dataset: str,
    session: str,
    modalities: Sequence[str],
    spike_bin_size: float,
    source_sha256: str | None = None,
    calcium_series: str | None = None,
) -> dict[str, Session]:
    """Read the requested modalities of one NWB file into validated Sessions.

    ``source_sha256`` is the file's SHA-256 when the caller already holds it (the DANDI
    download verified the file against the archive's digest and recorded it in the
    manifest; a synthesis step can record it while writing). It is recorded as given,
    so the same bytes are not hashed twice: hashing costs ~1 s per GB of CPU, more than
    the whole rest of preprocessing a spike file. Without it the file is hashed here,
    beside the reading. Either way ``meta["source_sha256"]`` is the SHA-256 of the whole
    file (what ``sha256sum`` prints), so provenance can be checked with standard tools.
    ``calcium_series`` picks the ophys series by name or path (see ``nwb_ophys``).
    """
    path = Path(nwb_path)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
    if not spike_bin_size > 0:
        raise ValueError(f"spike_bin_size must be > 0 seconds, got {spike_bin_size}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NWB file not found")
    if source_sha256 is None:
        # Hashing a multi-GB file takes seconds; it runs beside the reading (both release
        # the GIL).
        with ThreadPoolExecutor(max_workers=1) as pool:
            checksum = pool.submit(sha256_file, path)
            sessions, subject, behavior = _read(
                path, session, modalities, spike_bin_size, calcium_series
            )
            source_sha256 = checksum.result()
    elif _SHA256_HEX.fullmatch(source_sha256):
        sessions, subject, behavior = _read(
            path, session, modalities, spike_bin_size, calcium_series
        )
    else:
        raise ValueError(
            f"source_sha256 must be 64 lowercase hex digits (a SHA-256), got {source_sha256!r}"
        )
    meta = {
        "dataset": dataset,
        "session": session,
        "subject": subject,
        "source_path": str(path),
        "source_sha256": source_sha256,
        "software_version": getattr(neurossl, "__version__", "0.1.0"),
    }
    for result in sessions.values():
        result.meta = {**result.meta, **meta}
        _attach_behavior(result, behavior)
        result.validate(where=str(path))
    return sessions


def _read(
    path: Path,
    session: str,
    modalities: Sequence[str],
    spike_bin_size: float,
    calcium_series: str | None,
) -> tuple[dict[str, Session], str, list[Signal]]:
    with _open(path) as nwbfile:
        if nwbfile.units is None and not _has_ophys(nwbfile):
            raise NWBFormatError(path, "units|processing/ophys", "neither Units nor ophys data")
        subject = _subject(nwbfile, path, session)
        trials = read_trials(nwbfile, path)
        behavior = read_behavior(nwbfile, path)
        truth = nwbfile.processing.get(TRUTH_MODULE)
        sessions = {}
        for modality in modalities:
            if modality == "spikes":
                sessions[modality] = _spikes(nwbfile, path, spike_bin_size, trials, truth)
            else:
                sessions[modality] = _calcium(nwbfile, path, calcium_series, trials, truth)
    return sessions, subject, behavior


@contextlib.contextmanager
def _open(path: Path) -> Iterator[NWBFile]:
    refuse_nwb1(path)
    try:
        io = NWBHDF5IO(str(path), "r")
    except Exception as err:  # h5py/hdmf raise several types for a damaged file
        raise NWBFormatError(path, "file", f"not a readable NWB/HDF5 file ({err})") from err
    with io:
        try:
            nwbfile = io.read()
        except Exception as err:
            field, reason = _read_error(err)
            raise NWBFormatError(path, field, f"cannot be read as NWB: {reason}") from err
        yield nwbfile


def refuse_nwb1(path: Path) -> None:
    """Name NWB 1.x as unsupported instead of letting pynwb fail on a missing namespace."""
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("nwb_version")
            if version is None and isinstance(f.get("nwb_version"), h5py.Dataset):
                version = f["nwb_version"][()]  # NWB 1.x stores it as a root dataset
    except OSError:
        return  # not HDF5: the pynwb open below reports it
    if isinstance(version, bytes):
        version = version.decode(errors="replace")
    text = str(version or "").strip()
    if text.upper().startswith("NWB-1") or text.startswith("1."):
        raise NWBFormatError(
            path,
            "nwb_version",
            f"{text!r}: NWB 1.x is not supported (pynwb reads NWB 2 only). Convert the "
            "file to NWB 2 first, e.g. by re-exporting the original data with pynwb or "
            "neuroconv, then point the workflow at the converted file",
        )


def _read_error(err: Exception) -> tuple[str, str]:
    """The object and reason of a pynwb read failure, without hdmf's builder dump."""
    if isinstance(err, ConstructError) and len(err.args) == 2 and hasattr(err.args[0], "path"):
        return err.args[0].path.removeprefix("root/"), str(err.args[1])
    return "file", str(err)


def _has_ophys(nwbfile: NWBFile) -> bool:
    return any(
        isinstance(interface, (DfOverF, Fluorescence))
        for module in nwbfile.processing.values()
        for interface in module.data_interfaces.values()
    )


def _subject(nwbfile: NWBFile, path: Path, session: str) -> str:
    subject = nwbfile.subject
    if subject is not None and subject.subject_id:
        value = subject.subject_id
        return value.decode() if isinstance(value, bytes) else str(value)
    # Held-out-animal splits group sessions by subject, so the fallback is the most
    # specific name the file's own naming gives (a session id never merges two animals).
    for name in (path.parent.name, path.name):
        match = _SUBJECT_ENTITY.search(name)
        if match:
            found, origin = match.group(1), f"the subject entity of {name!r}"
            break
    else:
        found = str(nwbfile.session_id or "") or session
        origin = "the file's session_id" if nwbfile.session_id else "the session name"
    warn_assumed(path, "general/subject/subject_id", f"missing; took {found!r} ({origin})")
    return found


def _spikes(
    nwbfile: NWBFile, path: Path, bin_size: float, trials: pd.DataFrame, truth: object
) -> Session:
    if nwbfile.units is None:
        raise NWBFormatError(path, "units", "spikes requested but the file has no Units table")
    trains = read_units(nwbfile, path)
    if trains.times.size == 0:
        raise NWBFormatError(path, "units/spike_times", "no spikes at all")
    # Trains are sorted, so the extremes are among each unit's first and last spike.
    starts = np.r_[0, trains.ends[:-1]]
    nonempty = trains.ends > starts
    first = trains.times[starts[nonempty]].min()
    last = trains.times[trains.ends[nonempty] - 1].max()
    cut = min(0.0, float(trials["start"].min())) if len(trials) else 0.0
    if first < cut:
        trains = _drop_before(trains, cut, path)
        if trains.times.size == 0:
            raise NWBFormatError(path, "units/spike_times", "no spike after the session start")
        starts = np.r_[0, trains.ends[:-1]]
        nonempty = trains.ends > starts
        first = cut
        last = trains.times[trains.ends[nonempty] - 1].max()
    if len(trials):
        first, last = min(first, trials["start"].min()), max(last, trials["stop"].max())
    t0 = float(np.floor(first / bin_size) * bin_size)
    if t0 > first:  # float rounding put the aligned start just after the first event
        t0 -= bin_size
    n_bins = max(
        int(np.ceil((last - t0) / bin_size)), int(bin_index(np.array([last]), t0, bin_size)[0]) + 1
    )
    activity = bin_spike_times(trains.times, t0, bin_size, n_bins, index=trains.ends)
    result = _session(activity, "spikes", bin_size, t0, trains.neurons, trials)
    if truth is not None and "true_rates" in truth.data_interfaces:
        series = truth["true_rates"]
        field = f"processing/{TRUTH_MODULE}/true_rates"
        rates = np.asarray(series.data[:], dtype=np.float64)
        _check_columns(rates, result.n_neurons, path, field)
        rate_t0, step, regular = regular_grid(sample_times(series, path, field))
        if not regular:
            raise NWBFormatError(path, field, "true rates must be sampled regularly")
        result.truth["rates"] = expected_counts(rates, rate_t0, step, t0, bin_size, n_bins)
    _attach_truth(result, truth, trains.predictable, path)
    return result


def _drop_before(trains: SpikeTrains, cut: float, path: Path) -> SpikeTrains:
    """The trains without spikes before ``cut`` (each unit's train stays sorted)."""
    keep = trains.times >= cut
    kept = np.r_[0, np.cumsum(keep)]
    dropped = int(keep.size - keep.sum())
    warn_assumed(
        path,
        "units/spike_times",
        f"{dropped} spike(s) before t = {cut:g} s (the session start or first trial); "
        f"dropped, the grid starts there",
    )
    return SpikeTrains(
        times=trains.times[keep],
        ends=kept[trains.ends],
        neurons=trains.neurons,
        predictable=trains.predictable,
    )


def _calcium(
    nwbfile: NWBFile, path: Path, series: str | None, trials: pd.DataFrame, truth: object
) -> Session:
    traces = read_traces(nwbfile, path, series)  # calcium keeps its frame grid
    result = _session(
        traces.data, "calcium", traces.frame_period, traces.t0, traces.neurons, trials
    )
    result.meta = {"calcium_series": traces.field, "calcium_provenance": traces.provenance}
    if truth is not None and "true_calcium" in truth.data_interfaces:
        series = truth["true_calcium"]
        field = f"processing/{TRUTH_MODULE}/true_calcium"
        signal = np.asarray(series.data[:], dtype=np.float64)
        _check_columns(signal, result.n_neurons, path, field)
        times = sample_times(series, path, field)
        same_grid = times.size == result.n_bins and np.allclose(times, result.times, atol=1e-9)
        if not same_grid:
            signal = interpolate(times, signal, result.times)
        result.truth["signal"] = signal.astype(np.float32)
    _attach_truth(result, truth, traces.predictable, path)
    return result


def _session(
    activity: np.ndarray,
    modality: str,
    bin_size: float,
    t0: float,
    neurons: pd.DataFrame,
    trials: pd.DataFrame,
) -> Session:
    neurons = neurons.copy()
    blank = neurons["region"].str.strip() == ""
    neurons.loc[blank, "region"] = "unknown"
    if has_full_names(neurons["region"].to_numpy()):  # e.g. "Field CA1": the contract has acronyms
        neurons["region"] = full_names_to_acronyms(neurons["region"].to_numpy())
    return Session(
        activity=activity,
        modality=modality,
        bin_size=float(bin_size),
        t0=float(t0),
        neurons=neurons,
        trials=trials.copy(),
        behavior=np.empty((activity.shape[0], 0), dtype=np.float32),
        behavior_names=[],
        meta={},
    )


def _bin_centres(result: Session) -> np.ndarray:
    return result.times + 0.5 * result.bin_size


def _attach_behavior(result: Session, signals: list[Signal]) -> None:
    centres = _bin_centres(result)
    columns = [interpolate(s.times, s.values, centres) for s in signals]
    if columns:
        result.behavior = np.stack(columns, axis=1).astype(np.float32)
    result.behavior_names = [s.name for s in signals]


def _attach_truth(
    result: Session, truth: object, predictable: np.ndarray | None, path: Path
) -> None:
    if predictable is not None:
        result.truth["predictable"] = predictable
    if truth is not None and "latents" in truth.data_interfaces:
        series = truth["latents"]
        field = f"processing/{TRUTH_MODULE}/latents"
        times = sample_times(series, path, field)
        latents = np.asarray(series.data[:], dtype=np.float64).reshape(times.size, -1)
        result.truth["latents"] = interpolate(times, latents, _bin_centres(result)).astype(
            np.float32
        )


def _check_columns(values: np.ndarray, n_neurons: int, path: Path, field: str) -> None:
    if values.ndim != 2 or values.shape[1] != n_neurons:
        raise NWBFormatError(
            path, f"{field}/data", f"shape {values.shape}, expected [T, {n_neurons}]"
        )
