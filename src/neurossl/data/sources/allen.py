"""Allen Brain Observatory Visual Coding ophys (DANDI 000728) -> calcium Session + stimuli.

The generic reader gives dF/F (``processing/ophys/DfOverF``), ROI ids, the imaging
plane's area, the Cre line from the subject genotype and running speed / pupil from the
behaviour modules. This module adds the stimulus side, which the generic reader cannot
know:

- one trial row per presentation of drifting gratings, static gratings and natural
  scenes, with raw parameters and class labels named as the tasks that decode them
  (``stimulus_drifting_gratings_orientation`` = 8 classes,
  ``stimulus_drifting_gratings_temporal_frequency`` = 5 classes,
  ``stimulus_static_gratings_orientation``, ``stimulus_static_gratings_spatial_frequency``,
  ``stimulus_natural_scenes_frame``); blank sweeps get class -1;
- natural movie frame indices as behaviour channels (``natural_movie_one_frame`` ...),
  NaN outside the movie;
- the stimulus epoch of every row (``epoch``, ``epoch_start``, ``epoch_stop``), from the
  file's ``epochs`` table (``stimulus_type`` column) or, where a file has none, from
  runs of presentations of one stimulus; ``epoch_block_windows`` cuts each epoch into
  contiguous blocks and assigns whole blocks to train/valid/test so no window straddles
  two splits or two stimuli.

Layout facts, from the converter that wrote 000728 (catalystneuro/visual-coding-to-nwb-v2,
``visual_coding_ophys/interfaces``): dF/F is the series named ``DfOverF`` in the ``DfOverF``
container, beside ``DfOverFEvents`` (L0 events, never read) (``_processed_ophys.py``);
``drifting_gratings`` and ``static_gratings`` are TimeIntervals under ``/stimulus`` with
columns ``orientation_in_degrees``, ``spatial_frequency_in_cycles_per_degree``,
``temporal_frequency_in_hz`` / ``phase`` and ``is_blank_sweep``
(``_drifting_grating_stimulus.py``, ``_static_grating_stimulus.py``); natural scenes and
movies are IndexSeries ``natural_scenes_stimulus`` / ``natural_movie_*_stimulus`` whose
template indices were cast to uint32 (``_natural_scenes_stimulus.py``); ``epochs`` has
``stimulus_type`` (``_epochs.py``); the imaging plane's description holds a literal
``{depth}`` (``shared_methods/_shared_methods.py``), so depth comes from a shipped table
keyed by the container id the converter writes into ``notes`` (``_general_metadata.py``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pynwb import NWBHDF5IO, NWBFile
from pynwb.epoch import TimeIntervals

from neurossl.data.nwb import nwb_to_sessions
from neurossl.data.nwb_fields import NWBFormatError, sample_times, texts, warn_assumed
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
#: 000728's epoch bounds are imaging-frame times nearest the AllenSDK's epoch frames
#: (``_epochs.py``), so an epoch may start up to a frame after its first presentation.
EPOCH_SLACK = 0.1
#: Column names the 000728 converter writes (see the module docstring).
ORIENTATION = "orientation_in_degrees"
SPATIAL_FREQUENCY = "spatial_frequency_in_cycles_per_degree"
TEMPORAL_FREQUENCY = "temporal_frequency_in_hz"
BLANK = "is_blank_sweep"
#: Container id -> imaging depth (um); provenance in the file's header.
DEPTH_TABLE = Path(__file__).with_name("allen_imaging_depth.csv")
OPTIONS = ("require_stimuli", "calcium_series")
LABEL_COLUMNS = (
    "stimulus_drifting_gratings_orientation",
    "stimulus_drifting_gratings_temporal_frequency",
    "stimulus_static_gratings_orientation",
    "stimulus_static_gratings_spatial_frequency",
    "stimulus_natural_scenes_frame",
)


def read_allen_session(
    nwb_path: str | Path, *, dataset: str, session: str, options: Mapping[str, Any]
) -> Session:
    """One 000728 file -> a validated calcium Session with stimulus rows and epochs."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"allen: unknown key(s) {unknown}; expected {list(OPTIONS)}")
    path = Path(nwb_path)
    result = nwb_to_sessions(
        path,
        dataset=dataset,
        session=session,
        modalities=["calcium"],
        spike_bin_size=1.0,
        calcium_series=options.get("calcium_series", "DfOverF"),
    )["calcium"]
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        rows = stimulus_rows(nwbfile, path)
        movies = {m: _index_series(nwbfile, f"{m}_stimulus", path) for m in MOVIES}
        epochs = _epochs_table(nwbfile, path)
        depth, depth_source = imaging_depth(nwbfile, path)
    if result.neurons["depth"].isna().all():
        result.neurons["depth"] = depth
        result.meta["depth_source"] = depth_source
    if rows.empty and options.get("require_stimuli", True):
        raise NWBFormatError(
            path, "stimulus", "no drifting_gratings, static_gratings or natural_scenes table"
        )
    try:
        result.trials = assign_epochs(rows, epochs)
    except ValueError as err:
        raise NWBFormatError(path, "intervals/epochs", str(err)) from err
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
        frame = _columns(
            table,
            path,
            "drifting_gratings",
            (ORIENTATION, TEMPORAL_FREQUENCY),
            (SPATIAL_FREQUENCY,),
        )
        # The converter copies the Allen table's own blank_sweep flag here.
        blank = _flag(table, path, "drifting_gratings", frame)
        frame["stimulus_drifting_gratings_orientation"] = _classes(
            frame[ORIENTATION], DG_ORIENTATIONS, blank, path, f"drifting_gratings/{ORIENTATION}"
        )
        frame["stimulus_drifting_gratings_temporal_frequency"] = _classes(
            frame[TEMPORAL_FREQUENCY],
            DG_TEMPORAL_FREQUENCIES,
            blank,
            path,
            f"drifting_gratings/{TEMPORAL_FREQUENCY}",
        )
        parts.append(frame)
    table = _intervals(nwbfile, "static_gratings")
    if table is not None:
        frame = _columns(
            table, path, "static_gratings", (ORIENTATION, SPATIAL_FREQUENCY, "phase"), ()
        )
        # The converter's is_blank_sweep here is not per row (it combines the NaN flags of
        # rows 0-2, and zip() then stops after three rows); its documented convention,
        # NaN parameters on a blank sweep, is per row.
        blank = frame[[ORIENTATION, SPATIAL_FREQUENCY, "phase"]].isna().all(axis=1).to_numpy()
        if len(frame) <= 3:
            warn_assumed(
                path,
                "stimulus/static_gratings",
                f"only {len(frame)} row(s) (000728's converter wrote at most 3); "
                "static-grating labels cover only those",
            )
        frame["stimulus_static_gratings_orientation"] = _classes(
            frame[ORIENTATION], SG_ORIENTATIONS, blank, path, f"static_gratings/{ORIENTATION}"
        )
        frame["stimulus_static_gratings_spatial_frequency"] = _classes(
            frame[SPATIAL_FREQUENCY],
            SG_SPATIAL_FREQUENCIES,
            blank,
            path,
            f"static_gratings/{SPATIAL_FREQUENCY}",
        )
        parts.append(frame)
    scenes = _index_series(nwbfile, "natural_scenes_stimulus", path)
    if scenes is not None:
        times, frames = scenes
        stop = np.r_[times[1:], times[-1] + np.median(np.diff(times)) if times.size > 1 else 0.25]
        labels = scene_labels(frames, _template_count(nwbfile), path)
        parts.append(
            pd.DataFrame(
                {
                    "stimulus": "natural_scenes",
                    "start": times,
                    "stop": stop,
                    "frame": frames,
                    "stimulus_natural_scenes_frame": labels,
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


def scene_labels(frames: np.ndarray, n_templates: int | None, path: Path) -> np.ndarray:
    """Natural-scene class per presentation: template index, -1 blank, NaN ambiguous.

    The Allen table marks a blank (grey) presentation with -1; 000728's converter cast the
    indices to uint32, so a blank reads as 0 (HDF5 clips -1 to 0) or, had it wrapped, as
    a number past the last template. Past the last template is blank. A stored 0 is blank
    or scene 0 and no field tells which: when 0 occurs more often than any real scene
    (each scene is shown equally often), every 0 is ambiguous and gets NaN, so no
    presentation is scored under a wrong class.
    """
    labels = np.asarray(frames, dtype=np.float64).copy()
    if n_templates is not None:
        labels[labels >= n_templates] = -1
    scenes = labels[labels > 0]
    if scenes.size:
        counts = np.unique(scenes, return_counts=True)[1]
        zeros = int((labels == 0).sum())
        if zeros > counts.max():
            warn_assumed(
                path,
                "stimulus/natural_scenes_stimulus/data",
                f"index 0 shown {zeros} times, more than any other scene (at most "
                f"{int(counts.max())}): blanks (-1) were stored as 0; those presentations "
                "are left unlabelled",
            )
            labels[labels == 0] = np.nan
    return labels


def imaging_depth(nwbfile: NWBFile, path: Path) -> tuple[float, str]:
    """(depth in um, where it came from): the plane's description, else the shipped table."""
    for plane in nwbfile.imaging_planes.values():
        match = re.search(
            r"depth\D{0,20}?(\d+(?:\.\d+)?)\s*(?:um|µm|micron)", plane.description or ""
        )
        if match:
            return float(match.group(1)), f"imaging_planes/{plane.name}/description"
    container = re.search(r"Container ID:\s*(\d+)", nwbfile.notes or "")
    depth = _depth_table().get(int(container.group(1))) if container else None
    if depth is None:
        warn_assumed(
            path,
            "general/notes",
            f"no imaging depth for session {nwbfile.session_id} (container "
            f"{container.group(1) if container else 'not named'} is not in "
            f"{DEPTH_TABLE.name}); depth is NaN",
        )
        return float("nan"), "unknown"
    return depth, f"{DEPTH_TABLE.name}, container {container.group(1)}"


@cache
def _depth_table() -> dict[int, float]:
    with DEPTH_TABLE.open() as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {int(r["experiment_container_id"]): float(r["imaging_depth"]) for r in rows}


def _template_count(nwbfile: NWBFile) -> int | None:
    series = nwbfile.stimulus.get("natural_scenes_stimulus")
    images = getattr(series, "indexed_images", None)
    return len(images.images) if images is not None else None


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
            (rows["start"] >= start - EPOCH_SLACK)
            & (rows["start"] < stop)
            & (rows["stimulus"] == name)
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


def _columns(
    table: TimeIntervals,
    path: Path,
    name: str,
    wanted: tuple[str, ...],
    optional: tuple[str, ...],
) -> pd.DataFrame:
    missing = [c for c in wanted if c not in table.colnames]
    if missing:
        raise NWBFormatError(
            path, f"stimulus/{name}", f"lacks column(s) {missing}; has {list(table.colnames)}"
        )
    frame = pd.DataFrame(
        {
            "stimulus": name,
            "start": np.asarray(table["start_time"].data[:], dtype=np.float64),
            "stop": np.asarray(table["stop_time"].data[:], dtype=np.float64),
        }
    )
    for column in wanted + tuple(c for c in optional if c in table.colnames):
        frame[column] = np.asarray(table[column].data[:], dtype=np.float64)
    return frame


def _flag(table: TimeIntervals, path: Path, name: str, frame: pd.DataFrame) -> np.ndarray:
    """Blank sweeps from ``is_blank_sweep``; without it, from NaN parameters (one warning)."""
    parameters = frame.drop(columns=["stimulus", "start", "stop"])
    if BLANK not in table.colnames:
        warn_assumed(
            path, f"stimulus/{name}/{BLANK}", "missing; rows with NaN parameters taken as blank"
        )
        return parameters.isna().all(axis=1).to_numpy()
    blank = np.asarray(table[BLANK].data[:]).astype(bool)
    frame[BLANK] = blank.astype(np.float64)
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
