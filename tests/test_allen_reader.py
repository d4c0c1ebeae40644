"""Allen 000728 reader on files in the converter's layout, field by field."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from real_layouts_allen import (
    ALLEN_EPOCHS,
    CONTAINER_DEPTH,
    CONTAINER_ID,
    DG_ORIENTATIONS,
    DG_TEMPORAL_FREQUENCIES,
    dg_presentations,
    scene_sequence,
    write_allen_nwb,
)

from neurossl.data.nwb_fields import NWBFormatError
from neurossl.data.session import read_session, write_session
from neurossl.data.sources.allen import epoch_block_windows, read_allen_session


@pytest.fixture(scope="module")
def file_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_allen_nwb(tmp_path_factory.mktemp("allen") / "a.nwb", "222426", seed=5)


@pytest.fixture(scope="module")
def file_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_allen_nwb(tmp_path_factory.mktemp("allen") / "b.nwb", "222426", 6, stim="B")


def read(path: Path, **options) -> object:
    return read_allen_session(path, dataset="allen", session="s", options=options)


def test_dff_series_by_name_not_events_nor_raw(file_a: Path) -> None:
    session = read(file_a)
    with h5py.File(file_a, "r") as f:
        dff = f["processing/ophys/DfOverF/DfOverF/data"][()]
        times = f["processing/ophys/Fluorescence/Corrected/timestamps"][()]
    np.testing.assert_array_equal(session.activity, dff)
    assert session.meta["calcium_series"] == "processing/ophys/DfOverF/DfOverF"
    assert session.meta["calcium_provenance"].startswith("dF/F as stored")
    assert session.modality == "calcium" and session.t0 == pytest.approx(times[0])
    assert session.bin_size == pytest.approx(1 / 30, rel=1e-4)


def test_rois_region_cre_line_and_depth_from_the_shipped_table(file_a: Path) -> None:
    neurons = read(file_a).neurons
    assert neurons["id"].tolist() == [str(517400000 + k) for k in range(8)]
    assert set(neurons["region"]) == {"VISp"}
    assert set(neurons["cre_line"]) == {"Cux2-CreERT2"}
    assert (neurons["depth"] == CONTAINER_DEPTH).all()
    assert read(file_a).meta["depth_source"] == f"allen_imaging_depth.csv, container {CONTAINER_ID}"


def test_unknown_container_gives_nan_depth_and_one_warning(tmp_path: Path, caplog) -> None:
    path = write_allen_nwb(tmp_path / "c.nwb", "1", seed=7, container_id=1)
    with caplog.at_level(logging.WARNING, logger="neurossl"):
        session = read(path)
    assert session.neurons["depth"].isna().all()
    depth_warnings = [r.getMessage() for r in caplog.records if "imaging depth" in r.getMessage()]
    assert len(depth_warnings) == 1 and "500000007-StimA" in depth_warnings[0]


def test_drifting_grating_labels_and_blanks_from_is_blank_sweep(file_a: Path) -> None:
    trials = read(file_a).trials
    dg = trials[trials["stimulus"] == "drifting_gratings"].reset_index(drop=True)
    times, rows = dg_presentations(ALLEN_EPOCHS)
    np.testing.assert_array_equal(dg["start"], times)
    np.testing.assert_array_equal(dg["stop"], times + 2.0)
    blank = rows[:, 2] > 0
    np.testing.assert_array_equal(dg["is_blank_sweep"] > 0, blank)
    assert (dg.loc[blank, "stimulus_drifting_gratings_orientation"] == -1).all()
    assert (dg.loc[blank, "stimulus_drifting_gratings_temporal_frequency"] == -1).all()
    np.testing.assert_array_equal(
        dg.loc[~blank, "stimulus_drifting_gratings_orientation"],
        [DG_ORIENTATIONS.index(o) for o in rows[~blank, 1]],
    )
    np.testing.assert_array_equal(
        dg.loc[~blank, "stimulus_drifting_gratings_temporal_frequency"],
        [DG_TEMPORAL_FREQUENCIES.index(t) for t in rows[~blank, 0]],
    )
    np.testing.assert_array_equal(dg.loc[~blank, "orientation_in_degrees"], rows[~blank, 1])
    assert (dg["spatial_frequency_in_cycles_per_degree"] == 0.04).all()


def test_static_gratings_blanks_from_nan_and_the_three_row_table(file_b: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="neurossl"):
        trials = read(file_b).trials
    sg = trials[trials["stimulus"] == "static_gratings"]
    assert len(sg) == 3 and any("only 3 row(s)" in r.getMessage() for r in caplog.records)
    # Row 1 is the blank (NaN parameters); the file's is_blank_sweep there says otherwise.
    assert sg["stimulus_static_gratings_orientation"].tolist() == [0.0, -1.0, 2.0]
    assert sg["stimulus_static_gratings_spatial_frequency"].tolist() == [0.0, -1.0, 2.0]


def test_natural_scene_blanks_stored_as_zero_are_left_unlabelled(file_b: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="neurossl"):
        trials = read(file_b).trials
    ns = trials[trials["stimulus"] == "natural_scenes"].reset_index(drop=True)
    original = scene_sequence(len(ns))  # -1 = blank, as the Allen table had it
    assert len(ns) == 240
    real = original > 0
    np.testing.assert_array_equal(ns.loc[real, "stimulus_natural_scenes_frame"], original[real])
    assert ns.loc[original <= 0, "stimulus_natural_scenes_frame"].isna().all()
    assert sum("blanks (-1) were stored as 0" in r.getMessage() for r in caplog.records) == 1


def test_movie_frames_are_held_and_nan_outside(file_a: Path) -> None:
    session = read(file_a)
    *tracked, movie = session.behavior_names
    assert movie == "natural_movie_one_frame"
    assert sorted(tracked) == [
        "pupil_location_0",
        "pupil_location_1",
        "pupil_location_spherical_0",
        "pupil_location_spherical_1",
        "pupil_size",
        "running_speed",
    ]
    pupil = session.behavior[:, session.behavior_names.index("pupil_size")]
    assert np.isnan(pupil[105:125]).all() and not np.isnan(pupil[:99]).any()  # the blink
    frames = session.behavior[:, session.behavior_names.index("natural_movie_one_frame")]
    centres = session.times + 0.5 * session.bin_size
    assert np.isnan(frames[centres < 120.0]).all() and np.isnan(frames[centres > 150.1]).all()
    inside = frames[(centres > 120.1) & (centres < 120.9)]
    assert not np.isnan(inside).any() and (np.diff(inside) >= 0).all()


def test_session_round_trips(file_b: Path, tmp_path: Path) -> None:
    session = read(file_b)
    write_session(session, tmp_path / "s.calcium.h5")
    back = read_session(tmp_path / "s.calcium.h5")
    assert back.trials.equals(session.trials) and back.meta == session.meta


@pytest.mark.parametrize("epochs_table", [True, False])
def test_epoch_blocks_never_straddle_splits(epochs_table: bool, tmp_path: Path) -> None:
    path = write_allen_nwb(tmp_path / "b.nwb", "1", seed=1, epochs_table=epochs_table)
    trials = read(path).trials
    rng = np.random.default_rng(0)
    fractions = {"train": 0.7, "valid": 0.1, "test": 0.2}
    windows = epoch_block_windows(trials, window=2.0, block=10.0, fractions=fractions, rng=rng)
    bounds = trials[["epoch_start", "epoch_stop"]].drop_duplicates().to_numpy()
    for start, stop in zip(windows.start, windows.stop, strict=True):
        assert any(a <= start and stop <= b + 1e-9 for a, b in bounds)
    # Whole 10 s blocks, counted from each epoch's start, go to one split.
    epoch = np.array([np.flatnonzero(bounds[:, 0] <= s + 1e-9)[-1] for s in windows.start])
    block = np.floor((windows.start - bounds[epoch, 0]) / 10.0 + 1e-9)
    for key in set(zip(epoch, block, strict=True)):
        inside = (epoch == key[0]) & (block == key[1])
        assert len(set(windows.split[inside])) == 1
    if epochs_table:
        np.testing.assert_allclose(bounds, [(s, e) for _, s, e in ALLEN_EPOCHS], atol=0.04)
        assert set(windows.split[windows.start < 120]) == {"train", "valid", "test"}


def test_events_series_is_refused_and_unknown_option_too(file_a: Path) -> None:
    with pytest.raises(NWBFormatError, match=r"DfOverFEvents.*not a response"):
        read(file_a, calcium_series="DfOverFEvents")
    with pytest.raises(ValueError, match="unknown key"):
        read(file_a, x=1)
