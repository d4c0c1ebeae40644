"""Allen 000728 reader: dF/F, ROI metadata, stimulus labels, movie frames, epoch blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from real_layouts_allen import ALLEN_EPOCHS, write_allen_nwb

from neurossl.data.session import read_session, write_session
from neurossl.data.sources.allen import epoch_block_windows, read_allen_session


@pytest.fixture(scope="module")
def session_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_allen_nwb(tmp_path_factory.mktemp("allen") / "a.nwb", "501800347", seed=5)


def test_reads_traces_rois_and_metadata(session_file: Path, tmp_path: Path) -> None:
    session = read_allen_session(session_file, dataset="allen", session="s", options={})
    assert session.modality == "calcium"
    assert session.bin_size == pytest.approx(1 / 30)
    assert session.neurons["id"].tolist()[0] == "517000000"
    assert set(session.neurons["region"]) == {"VISp"}
    assert set(session.neurons["cre_line"]) == {"Sst-IRES-Cre"}
    assert (session.neurons["depth"] == 175.0).all()
    assert session.behavior_names == ["running_speed", "natural_movie_one_frame"]
    write_session(session, tmp_path / "s.calcium.h5")
    assert read_session(tmp_path / "s.calcium.h5").trials.equals(session.trials)


def test_stimulus_labels(session_file: Path) -> None:
    trials = read_allen_session(session_file, dataset="a", session="s", options={}).trials
    dg = trials[trials["stimulus"] == "drifting_gratings"]
    assert len(dg) == 19
    blank = dg["blank_sweep"] > 0
    assert (dg.loc[blank, "drifting_gratings_orientation"] == -1).all()
    np.testing.assert_array_equal(
        dg.loc[~blank, "drifting_gratings_orientation"], (np.arange(19) % 8)[~blank.to_numpy()]
    )
    tf_classes = dg.loc[~blank, "drifting_gratings_temporal_frequency"]
    assert set(tf_classes) == {0, 1, 2, 3, 4}
    ns = trials[trials["stimulus"] == "natural_scenes"]
    assert len(ns) == 120 and ns["natural_scenes_frame"].max() == 117
    assert ns["drifting_gratings_orientation"].isna().all()


def test_movie_frames_are_held_and_nan_outside(session_file: Path) -> None:
    session = read_allen_session(session_file, dataset="a", session="s", options={})
    frames = session.behavior[:, session.behavior_names.index("natural_movie_one_frame")]
    centres = session.times + 0.5 * session.bin_size
    assert np.isnan(frames[centres < 90.0]).all()
    inside = frames[(centres > 90.1) & (centres < 119.9)]
    assert not np.isnan(inside).any() and (np.diff(inside) >= 0).all()


@pytest.mark.parametrize("epochs_table", [True, False])
def test_epoch_blocks_never_straddle_splits(epochs_table: bool, tmp_path: Path) -> None:
    path = write_allen_nwb(tmp_path / "b.nwb", "1", seed=1, epochs_table=epochs_table)
    trials = read_allen_session(path, dataset="a", session="s", options={}).trials
    rng = np.random.default_rng(0)
    fractions = {"train": 0.7, "valid": 0.1, "test": 0.2}
    windows = epoch_block_windows(trials, window=2.0, block=10.0, fractions=fractions, rng=rng)
    bounds = trials[["epoch_start", "epoch_stop"]].drop_duplicates().to_numpy()
    for start, stop in zip(windows.start, windows.stop, strict=True):
        assert any(a <= start and stop <= b + 1e-9 for a, b in bounds)
    block = np.floor(windows.start / 10.0 + 1e-9)
    for b in np.unique(block):
        assert len(set(windows.split[block == b])) == 1
    if epochs_table:
        assert [tuple(x) for x in bounds] == [(s, e) for _, s, e in ALLEN_EPOCHS]
        assert set(windows.split[windows.start < 60]) == {"train", "valid", "test"}


def test_unknown_option_is_refused(session_file: Path) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        read_allen_session(session_file, dataset="a", session="s", options={"x": 1})
