"""Allen Brain Observatory Visual Coding ophys (DANDI 000728) -> calcium Session + stimuli.

The generic reader gives dF/F (``processing/ophys/DfOverF``), ROI ids, the imaging
plane's area, the Cre line from the subject genotype and running speed / pupil from the
behaviour modules. This module adds the stimulus side, which the generic reader cannot
know:

- one trial row per presentation of drifting gratings, static gratings and natural
  scenes, with raw parameters and class labels named as the tasks that decode them
  (``drifting_gratings_orientation`` = 8 classes, ``drifting_gratings_temporal_frequency``
  = 5 classes, ``static_gratings_orientation``, ``static_gratings_spatial_frequency``,
  ``natural_scenes_frame``); blank sweeps get class -1;
- natural movie frame indices as behaviour channels (``natural_movie_one_frame`` ...),
  NaN outside the movie;
- the stimulus epoch of every row (``epoch``, ``epoch_start``, ``epoch_stop``), from the
  file's ``epochs`` table (``stimulus_type`` column) or, where a file has none, from
  runs of presentations of one stimulus; ``epoch_block_windows`` cuts each epoch into
  contiguous blocks and assigns whole blocks to train/valid/test so no window straddles
  two splits or two stimuli.

Layout facts (000728 converter: stimulus tables ``drifting_gratings`` / ``static_gratings``
as TimeIntervals and ``natural_scenes_stimulus`` / ``natural_movie_*_stimulus`` as
IndexSeries under ``/stimulus``; ``epochs`` with ``stimulus_type``) come from the AIND
conversion code and the DANDI example notebook; the tables are also looked up under
``/intervals`` and ``/acquisition`` because older conversions put them there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pynwb import NWBHDF5IO, NWBFile
from pynwb.epoch import TimeIntervals

from neurossl.data.nwb import nwb_to_sessions
from neurossl.data.nwb_fields import NWBFormatError, sample_times, texts
from neurossl.data.session import Session
from neurossl.data.splits import Windows
from neurossl.data.windows import check_fractions

#: Class vocabularies of the Visual Coding protocol (de Vries et al. 2020).
DG_ORIENTATIONS = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
DG_TEMPORAL_FREQUENCIES = (1.0, 2.0, 4.0, 8.0, 15.0)
SG_ORIENTATIONS = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0)
SG_SPATIAL_FREQUENCIES = (0.02, 0.04, 0.08, 0.16, 0.32)
MOVIES = ("natural_movie_one", "natural_movie_two", "natural_movie_three")
#: A gap between presentations longer than this starts a new epoch (files without epochs).
EPOCH_GAP = 5.0
LABEL_COLUMNS = (
    "drifting_gratings_orientation",
    "drifting_gratings_temporal_frequency",
    "static_gratings_orientation",
    "static_gratings_spatial_frequency",
    "natural_scenes_frame",
)


def read_allen_session(
    nwb_path: str | Path, *, dataset: str, session: str, options: Mapping[str, Any]
) -> Session:
    """One 000728 file -> a validated calcium Session with stimulus rows and epochs."""
    unknown = sorted(set(options) - {"require_stimuli"})
    if unknown:
        raise ValueError(f"allen: unknown key(s) {unknown}; expected ['require_stimuli']")
    path = Path(nwb_path)
    result = nwb_to_sessions(
        path, dataset=dataset, session=session, modalities=["calcium"], spike_bin_size=1.0
    )["calcium"]
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        rows = stimulus_rows(nwbfile, path)
        movies = {m: _index_series(nwbfile, f"{m}_stimulus", path) for m in MOVIES}
        epochs = _epochs_table(nwbfile, path)
        depth = _plane_depth(nwbfile)
    if result.neurons["depth"].isna().all() and depth is not None:
        result.neurons["depth"] = depth
    if rows.empty and options.get("require_stimuli", True):
        raise NWBFormatError(
            path, "stimulus", "no drifting_gratings, static_gratings or natural_scenes table"
        )
    result.trials = assign_epochs(rows, epochs)
    centres = result.times + 0.5 * result.bin_size
    names = list(result.behavior_names)
    columns = [result.behavior[:, k] for k in range(len(names))]
    for movie, series in movies.items():
        if series is not None:
            names.append(f"{movie}_frame")
            columns.append(_held_frames(series[0], series[1], centres, result.bin_size))
    if columns:
        result.behavior = np.stack(columns, axis=1).astype(np.float32)
    result.behavior_names = names
    result.validate(where=str(path))
    return result


def stimulus_rows(nwbfile: NWBFile, path: Path) -> pd.DataFrame:
    """One row per grating / natural-scene presentation, sorted by time."""
    parts = []
    table = _intervals(nwbfile, "drifting_gratings")
    if table is not None:
        frame = _columns(table, path, "drifting_gratings", ("orientation", "temporal_frequency"))
        blank = _blank(frame)
        frame["drifting_gratings_orientation"] = _classes(
            frame["orientation"], DG_ORIENTATIONS, blank, path, "drifting_gratings/orientation"
        )
        frame["drifting_gratings_temporal_frequency"] = _classes(
            frame["temporal_frequency"],
            DG_TEMPORAL_FREQUENCIES,
            blank,
            path,
            "drifting_gratings/temporal_frequency",
        )
        parts.append(frame)
    table = _intervals(nwbfile, "static_gratings")
    if table is not None:
        frame = _columns(
            table, path, "static_gratings", ("orientation", "spatial_frequency", "phase")
        )
        blank = _blank(frame)
        frame["static_gratings_orientation"] = _classes(
            frame["orientation"], SG_ORIENTATIONS, blank, path, "static_gratings/orientation"
        )
        frame["static_gratings_spatial_frequency"] = _classes(
            frame["spatial_frequency"],
            SG_SPATIAL_FREQUENCIES,
            blank,
            path,
            "static_gratings/spatial_frequency",
        )
        parts.append(frame)
    scenes = _index_series(nwbfile, "natural_scenes_stimulus", path)
    if scenes is not None:
        times, frames = scenes
        stop = np.r_[times[1:], times[-1] + np.median(np.diff(times)) if times.size > 1 else 0.25]
        parts.append(
            pd.DataFrame(
                {
                    "stimulus": "natural_scenes",
                    "start": times,
                    "stop": stop,
                    "frame": frames,
                    "natural_scenes_frame": np.where(frames < 0, -1, frames),
                }
            )
        )
    if not parts:
        return pd.DataFrame({"start": [], "stop": [], "align": []})
    rows = pd.concat(parts, ignore_index=True).sort_values("start", kind="stable")
    rows = rows.reset_index(drop=True)
    rows.insert(2, "align", rows["start"].to_numpy())
    for column in LABEL_COLUMNS:
        if column not in rows:
            rows[column] = np.nan
    return rows


def assign_epochs(rows: pd.DataFrame, epochs: pd.DataFrame | None) -> pd.DataFrame:
    """Add ``epoch``, ``epoch_start``, ``epoch_stop`` to every stimulus row."""
    rows = rows.copy()
    if rows.empty:
        for column in ("epoch", "epoch_start", "epoch_stop"):
            rows[column] = np.array([], dtype=np.float64)
        return rows
    if epochs is None:
        epochs = _runs(rows)
    starts = epochs["start"].to_numpy(dtype=np.float64)
    stops = epochs["stop"].to_numpy(dtype=np.float64)
    names = epochs["stimulus"].to_numpy()
    index = np.full(len(rows), -1, dtype=np.int64)
    for k, (start, stop, name) in enumerate(zip(starts, stops, names, strict=True)):
        inside = (
            (rows["start"] >= start - 1e-6) & (rows["start"] < stop) & (rows["stimulus"] == name)
        )
        index[inside.to_numpy()] = k
    if (index < 0).any():
        first = rows.loc[index < 0].iloc[0]
        raise ValueError(
            f"stimulus row at {first['start']:.3f} s ({first['stimulus']}) lies in no epoch of "
            f"the epochs table"
        )
    rows["epoch"] = index
    # Epochs without parameterised presentations (movies, spontaneous) still get one row
    # spanning the epoch, so epoch_block_windows cuts windows from them too.
    empty = np.setdiff1d(np.arange(len(starts)), index)
    extra = pd.DataFrame(
        {"stimulus": names[empty], "start": starts[empty], "stop": stops[empty], "epoch": empty}
    )
    extra["align"] = extra["start"]
    rows = pd.concat([rows, extra], ignore_index=True)
    rows = rows.sort_values(["start", "epoch"], kind="stable").reset_index(drop=True)
    rows["epoch_start"] = starts[rows["epoch"].to_numpy()]
    rows["epoch_stop"] = stops[rows["epoch"].to_numpy()]
    return rows


def epoch_block_windows(
    trials: pd.DataFrame,
    window: float,
    block: float,
    fractions: dict[str, float],
    rng: np.random.Generator,
) -> Windows:
    """Contiguous blocks inside each stimulus epoch; whole blocks go to one split.

    Each epoch is split on its own (exact fraction counts per epoch), so every stimulus is
    represented in train, valid and test, and no window crosses an epoch boundary.
    """
    if window <= 0 or block < window:
        raise ValueError(f"need 0 < window <= block, got window={window}, block={block}")
    values = check_fractions(fractions)
    names = np.array(["train", "valid", "test"], dtype=object)
    epochs = trials[["epoch", "epoch_start", "epoch_stop"]].drop_duplicates("epoch")
    start, split = [], []
    per_block = int(np.floor(block / window + 1e-9))
    for _, epoch in epochs.sort_values("epoch").iterrows():
        n_blocks = int(np.floor((epoch["epoch_stop"] - epoch["epoch_start"]) / block + 1e-9))
        if n_blocks == 0:
            continue
        counts = _block_counts(values, n_blocks)
        labels = np.repeat(names, counts)[rng.permutation(n_blocks)]
        offsets = np.arange(per_block) * window
        for b in range(n_blocks):
            start.append(epoch["epoch_start"] + b * block + offsets)
            split.append(np.full(per_block, labels[b], dtype=object))
    if not start:
        raise ValueError(f"no stimulus epoch is at least one block ({block} s) long")
    begin = np.concatenate(start)
    return Windows(
        start=begin,
        stop=begin + window,
        split=np.concatenate(split),
        trial=np.full(begin.shape, -1, dtype=np.int64),
    )


def _block_counts(fractions: np.ndarray, n_blocks: int) -> np.ndarray:
    """Blocks per split: floor of the fractions, remainder to train, and at least one block
    for every split with a non-zero fraction when the epoch has enough blocks (a short
    epoch would otherwise have no validation data at all)."""
    counts = np.floor(fractions * n_blocks).astype(int)
    counts[0] += n_blocks - counts.sum()
    wanted = fractions > 0
    if n_blocks >= wanted.sum():
        for k in np.flatnonzero(wanted & (counts == 0)):
            counts[int(np.argmax(counts))] -= 1
            counts[k] = 1
    return counts


def _intervals(nwbfile: NWBFile, name: str) -> TimeIntervals | None:
    for group in (nwbfile.stimulus, nwbfile.intervals or {}, nwbfile.acquisition):
        table = group.get(name) if hasattr(group, "get") else None
        if isinstance(table, TimeIntervals):
            return table
    return None


def _index_series(nwbfile: NWBFile, name: str, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(presentation times, template indices) of an IndexSeries, if the file has it."""
    series = nwbfile.stimulus.get(name)
    if series is None:
        return None
    times = sample_times(series, path, f"stimulus/{name}")
    return times, np.asarray(series.data[:], dtype=np.float64)


def _columns(table: TimeIntervals, path: Path, name: str, wanted: tuple[str, ...]) -> pd.DataFrame:
    missing = [c for c in wanted if c not in table.colnames]
    if missing:
        raise NWBFormatError(path, f"stimulus/{name}", f"lacks column(s) {missing}")
    frame = pd.DataFrame(
        {
            "stimulus": name,
            "start": np.asarray(table["start_time"].data[:], dtype=np.float64),
            "stop": np.asarray(table["stop_time"].data[:], dtype=np.float64),
        }
    )
    for column in wanted:
        frame[column] = np.asarray(table[column].data[:], dtype=np.float64)
    if "blank_sweep" in table.colnames:
        frame["blank_sweep"] = np.asarray(table["blank_sweep"].data[:], dtype=np.float64)
    return frame


def _blank(frame: pd.DataFrame) -> np.ndarray:
    """Blank sweeps: flagged in ``blank_sweep`` or with NaN parameters (both conventions)."""
    blank = frame.drop(columns=["stimulus", "start", "stop"]).isna().any(axis=1).to_numpy()
    if "blank_sweep" in frame:
        blank = blank | (frame["blank_sweep"].to_numpy() > 0)
    return blank


def _classes(
    values: pd.Series, vocabulary: tuple[float, ...], blank: np.ndarray, path: Path, field: str
) -> np.ndarray:
    values = values.to_numpy(dtype=np.float64)
    vocab = np.asarray(vocabulary)
    match = np.isclose(values[:, None], vocab[None, :], rtol=1e-6, atol=1e-9)
    unknown = ~blank & ~match.any(axis=1)
    if unknown.any():
        raise NWBFormatError(
            path,
            f"stimulus/{field}",
            f"value {values[unknown][0]} is not one of the protocol's {vocabulary}",
        )
    return np.where(blank, -1, match.argmax(axis=1)).astype(np.float64)


def _epochs_table(nwbfile: NWBFile, path: Path) -> pd.DataFrame | None:
    epochs = nwbfile.epochs
    if epochs is None or len(epochs) == 0:
        return None
    if "stimulus_type" not in epochs.colnames:
        raise NWBFormatError(path, "intervals/epochs/stimulus_type", "missing")
    return pd.DataFrame(
        {
            "stimulus": texts(epochs["stimulus_type"].data[:]),
            "start": np.asarray(epochs["start_time"].data[:], dtype=np.float64),
            "stop": np.asarray(epochs["stop_time"].data[:], dtype=np.float64),
        }
    )


def _plane_depth(nwbfile: NWBFile) -> float | None:
    """Imaging depth (um) from the imaging plane's description, e.g. '... depth 175 um'.

    Where 000728 records the depth could not be verified offline; this covers the
    description convention and leaves NaN (not a guess) otherwise.
    """
    for plane in nwbfile.imaging_planes.values():
        match = re.search(
            r"depth\D{0,20}?(\d+(?:\.\d+)?)\s*(?:um|µm|micron)", plane.description or ""
        )
        if match:
            return float(match.group(1))
    return None


def _runs(rows: pd.DataFrame) -> pd.DataFrame:
    """Epochs as maximal runs of one stimulus without a gap longer than EPOCH_GAP."""
    stimulus = rows["stimulus"].to_numpy()
    start, stop = rows["start"].to_numpy(), rows["stop"].to_numpy()
    new = np.r_[True, (stimulus[1:] != stimulus[:-1]) | (start[1:] - stop[:-1] > EPOCH_GAP)]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(rows) - 1]
    return pd.DataFrame({"stimulus": stimulus[first], "start": start[first], "stop": stop[last]})


def _held_frames(
    times: np.ndarray, frames: np.ndarray, centres: np.ndarray, frame_period: float
) -> np.ndarray:
    """The movie frame on screen at each imaging frame; NaN outside presentations."""
    step = float(np.median(np.diff(times))) if times.size > 1 else frame_period
    index = np.searchsorted(times, centres, side="right") - 1
    valid = index >= 0
    held = np.full(centres.shape, np.nan)
    held[valid] = frames[index[valid]]
    gap = np.full(centres.shape, np.inf)
    gap[valid] = centres[valid] - times[index[valid]]
    held[gap > 2 * step] = np.nan
    return held
