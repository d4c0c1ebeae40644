"""Real NWB files written by other labs' tools, read by the generic reader (``source: local``).

Each file in ``tests/data/nwb_corpus`` (origins in its README) either becomes a Session
whose shape and values are checked against the file, or is refused with an error naming
the file and what is missing, leaving no output behind. Values asserted here were read
from the files with h5py, independently of the reader.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurossl.data.preprocess import preprocess_to_session, read_modality
from neurossl.data.session import Session
from neurossl.data.sources.dandi import asset_session_id
from neurossl.data.sources.local import LocalSourceError, local_session_ids, local_sessions

CORPUS = Path(__file__).parent / "data" / "nwb_corpus"
ALM = "sub-anm369963_ses-20170228.nwb"  # Svoboda lab, spiking with trials (NWB 2.0.2)
PHY = "pynapple_phy_A8604-211122.nwb"  # pynapple phy loader, spiking, no trials
SUITE2P = "suite2p_export_2022_08_08.nwb"  # suite2p save_nwb: (ROIs x frames), raw F
MINIAN = "pynapple_minian_demo_movies.nwb"  # miniscope / minian
INSCOPIX = "pynapple_inscopix_cnmfe_A0634-210127.nwb"  # Inscopix CNMF-E
MATLAB_CNMFE = "pynapple_matlab_cnmfe_A6512-210915.nwb"  # CNMF-E (MATLAB)
NWB1 = "allen_nwb1_496908818s.nwb"  # Allen Brain Observatory, NWB 1.0.5
FILES = (ALM, PHY, SUITE2P, MINIAN, INSCOPIX, MATLAB_CNMFE, NWB1)


def read(name: str, modality: str, bin_size: float = 0.02) -> Session:
    path = CORPUS / name
    return read_modality(
        path,
        dataset="corpus",
        session=asset_session_id(name),
        modality=modality,
        reader="nwb",
        spike_bin_size=bin_size,
        options={},
    )


@contextmanager
def fallbacks(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Warning texts the reader emitted, through logging or ``warnings``."""
    messages: list[str] = []
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    messages += [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    messages += [str(w.message) for w in caught]


def assert_refused(name: str, modality: str, tmp_path: Path, *needles: str) -> str:
    """The file is refused with an error naming it (and ``needles``), leaving no output."""
    out = tmp_path / f"{name}.{modality}.h5"
    with pytest.raises(Exception) as info:  # any type: the message is what is checked
        preprocess_to_session(
            nwb_path=CORPUS / name,
            out_path=out,
            dataset="corpus",
            session=asset_session_id(name),
            modality=modality,
            reader="nwb",
            spike_bin_size=0.02,
            options={},
        )
    message = str(info.value)
    assert name in message, f"error does not name the file: {message}"
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in: {message}"
    assert not list(tmp_path.iterdir()), "a refused file left output behind"
    return message


# --- listing through the local source ------------------------------------------------


def test_local_source_lists_every_nwb2_file_and_names_the_nwb1_file(tmp_path: Path) -> None:
    for name in FILES:
        if name != NWB1:
            shutil.copyfile(CORPUS / name, tmp_path / name)
    sessions = local_sessions({"path": str(tmp_path)})
    expected = {asset_session_id(n) for n in FILES if n != NWB1}
    assert set(sessions) == expected
    assert "20170228" in sessions  # the BIDS-like ses- entity, as on DANDI
    shutil.copyfile(CORPUS / NWB1, tmp_path / NWB1)
    with pytest.raises(LocalSourceError, match=rf"{NWB1}: .*NWB 1\.x is not supported"):
        local_session_ids({"path": str(tmp_path), "pattern": "allen*.nwb"})


# --- the contract every file meets today: a Session or an error naming the file -------


@pytest.mark.parametrize("modality", ["spikes", "calcium"])
@pytest.mark.parametrize("name", FILES)
def test_every_file_gives_a_session_or_an_error_naming_it(name: str, modality: str) -> None:
    try:
        session = read(name, modality)
    except Exception as err:
        assert name in str(err), f"{type(err).__name__} names no file: {err}"
    else:
        session.validate(where=name)
        assert session.modality == modality


# --- spiking --------------------------------------------------------------------------


def test_alm_spiking_with_trials(caplog: pytest.LogCaptureFixture) -> None:
    with h5py.File(CORPUS / ALM, "r") as f:
        spikes = f["units/spike_times"][:]
        starts = f["intervals/trials/start_time"][:]
    with fallbacks(caplog) as messages:
        session = read(ALM, "spikes")
    assert session.activity.shape[1] == 1
    assert session.activity.sum() == spikes.size == 1679
    assert session.bin_size == pytest.approx(0.02)
    assert session.t0 <= spikes.min() and session.t0 <= starts.min()
    assert session.meta["subject"] == "anm369963"
    assert session.neurons["depth"].tolist() == [780.0]
    assert "ALM" in session.neurons["region"].iloc[0]
    trials = session.trials
    assert len(trials) == 178
    np.testing.assert_allclose(trials["start"], starts)
    np.testing.assert_allclose(trials["stop"].to_numpy()[:-1], starts[1:])
    assert np.isfinite(trials["stop"]).all() and (trials["stop"] > trials["start"]).all()
    assert set(trials["type"]) == {"lick right", "lick left"}  # byte strings decoded
    assert {"correct", "incorrect", "early lick"} <= set(trials["response"])
    assert any(ALM in m and "stop_time" in m for m in messages), messages


def test_alm_refuses_calcium_naming_what_is_missing(tmp_path: Path) -> None:
    message = assert_refused(ALM, "calcium", tmp_path)
    assert "DfOverF" in message or "Fluorescence" in message or "ophys" in message


def test_phy_units_without_electrodes(caplog: pytest.LogCaptureFixture) -> None:
    with h5py.File(CORPUS / PHY, "r") as f:
        n_spikes = f["units/spike_times"].shape[0]
        ends = f["units/spike_times_index"][:]
    with fallbacks(caplog) as messages:
        session = read(PHY, "spikes", bin_size=0.05)
    assert session.activity.shape[1] == 3
    assert session.activity.sum() == n_spikes == 21354
    np.testing.assert_array_equal(session.activity.sum(axis=0), np.diff(ends, prepend=0))
    # units/location and the electrode group's location are both empty strings
    assert session.neurons["region"].tolist() == ["unknown"] * 3
    assert session.meta["subject"] == asset_session_id(PHY)
    assert len(session.trials) == 0
    assert any(PHY in m and "subject" in m for m in messages), messages


def test_calcium_only_file_refuses_spikes(tmp_path: Path) -> None:
    assert_refused(MINIAN, "spikes", tmp_path, "units")


# --- calcium --------------------------------------------------------------------------


def test_suite2p_export(caplog: pytest.LogCaptureFixture) -> None:
    """A Session of the ROIs that have a dF/F: 71 of this export's 219 ROIs are 0 in every
    frame and 72 more sit below zero after neuropil subtraction; each group is dropped with
    one warning."""
    with h5py.File(CORPUS / SUITE2P, "r") as f:
        raw = f["processing/ophys/Fluorescence/Fluorescence/data"][:]  # (219, 500)
        neuropil = f["processing/ophys/Neuropil/Neuropil/data"][:]
    assert raw.shape == (219, 500)
    empty = raw.max(axis=1) == 0
    assert empty.sum() == 71
    with fallbacks(caplog) as messages:
        session = read(SUITE2P, "calcium")
    assert session.bin_size == pytest.approx(0.1)
    assert session.activity.shape[0] == 500 and 0 < session.activity.shape[1] < 219 - 71
    assert np.isfinite(session.activity).all()
    kept = session.neurons["id"].astype(int).to_numpy()
    assert not empty[kept].any()
    corrected = raw[kept] - 0.7 * neuropil[kept]
    # dF/F of the kept ROIs, never the raw traces
    assert np.corrcoef(session.activity[:, 0], corrected[0])[0, 1] > 0.95
    assert not np.allclose(session.activity, raw[kept].T.astype(np.float32))
    assert session.meta["subject"] == asset_session_id(SUITE2P)
    assert any(SUITE2P in m and "subject" in m for m in messages), messages
    assert any(SUITE2P in m and "0 in every frame" in m for m in messages), messages
    assert any(SUITE2P in m and "after neuropil subtraction" in m for m in messages), messages


@pytest.mark.parametrize(
    ("name", "n_frames"),
    [
        pytest.param(MINIAN, 600, id="minian"),
        pytest.param(MATLAB_CNMFE, 3000, id="matlab_cnmfe"),
    ],
)
def test_one_photon_pipelines(
    name: str, n_frames: int, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A Session, or a refusal naming the series: CNMF-E/minian traces are denoised and
    background-subtracted (baseline ~0), so a dF/F baseline may not exist."""
    with h5py.File(CORPUS / name, "r") as f:
        series = f["processing/ophys/Fluorescence/RoiResponseSeries"]
        raw = series["data"][:]
        times = series["timestamps"][:]
    assert raw.shape == (n_frames, 10)
    with fallbacks(caplog) as messages:
        try:
            session = read(name, "calcium")
        except Exception:
            session = None
    if session is None:
        assert_refused(name, "calcium", tmp_path, "processing/ophys/Fluorescence/RoiResponseSeries")
        return
    assert session.activity.shape[1] == 10
    assert abs(session.activity.shape[0] - n_frames) <= 1  # timestamps put on a grid
    assert session.bin_size == pytest.approx(np.median(np.diff(times)), rel=1e-3)
    assert session.t0 == pytest.approx(times[0], abs=session.bin_size)
    assert np.isfinite(session.activity).all()
    if session.activity.shape == raw.shape:  # never raw traces taken for dF/F
        assert not np.allclose(session.activity, raw)
    assert any(name in m for m in messages), messages


def test_inscopix_cnmfe_session_or_clear_refusal(tmp_path: Path) -> None:
    """Traces go negative, so a percentile baseline may not exist: either outcome is fine."""
    try:
        session = read(INSCOPIX, "calcium")
    except Exception as err:
        message = assert_refused(INSCOPIX, "calcium", tmp_path, "RoiResponseSeries")
        assert str(err) == message
    else:
        with h5py.File(CORPUS / INSCOPIX, "r") as f:
            raw = f["processing/ophys/Fluorescence/RoiResponseSeries/data"][:]
        assert session.activity.shape == raw.shape == (3000, 10)
        assert not np.allclose(session.activity, raw)  # never raw traces taken for dF/F
        assert session.bin_size == pytest.approx(1 / 30, rel=1e-3)
        assert np.isfinite(session.activity).all()


# --- NWB 1.x --------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["spikes", "calcium"])
def test_nwb1_is_refused_as_nwb1(modality: str, tmp_path: Path) -> None:
    assert_refused(NWB1, modality, tmp_path, "NWB 1")
