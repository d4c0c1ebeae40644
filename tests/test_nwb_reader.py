"""NWB -> Session: round trip of the synthetic layout, real-world variation, bad input."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from pynwb import NWBHDF5IO, NWBFile
from pynwb.behavior import BehavioralTimeSeries
from pynwb.file import Subject
from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel

from neurossl.data import nwb, nwb_units, session
from neurossl.data.nwb import NWBFormatError, nwb_to_sessions
from neurossl.data.session import SessionError, all_finite, read_session, write_session
from neurossl.data.sources.synthetic import SyntheticConfig, write_session_nwb

CONFIG = SyntheticConfig(n_trials=20, n_units=24, n_rois=20)
SESSION = "sub-02_ses-01"
BIN = 0.02


@pytest.fixture(scope="module")
def nwb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nwb") / f"{SESSION}.nwb"
    write_session_nwb(CONFIG, SESSION, path)
    return path


@pytest.fixture(scope="module")
def sessions(nwb_path: Path) -> dict:
    return read(nwb_path, ("spikes", "calcium"))


def read(path: Path, modalities: tuple[str, ...] = ("spikes", "calcium")) -> dict:
    return nwb_to_sessions(
        path, dataset="synthetic", session=SESSION, modalities=modalities, spike_bin_size=BIN
    )


def preprocess_and_write(path: Path, out: Path, modalities: tuple[str, ...]) -> None:
    """What the preprocess rule does: read everything first, then write each Session."""
    for modality, result in read(path, modalities).items():
        write_session(result, out / f"{modality}.h5")


# --- round trip of the synthetic layout -------------------------------------------------


def test_spike_counts_equal_binning_the_raw_spike_times(nwb_path: Path, sessions: dict):
    spikes = sessions["spikes"]
    with h5py.File(nwb_path, "r") as f:
        times, ends = f["units/spike_times"][()], f["units/spike_times_index"][()]
        last_stop = f["intervals/trials/stop_time"][()].max()
    edges = spikes.t0 + np.arange(spikes.n_bins + 1) * BIN
    for j, train in enumerate(np.split(times, ends[:-1])):
        np.testing.assert_array_equal(spikes.activity[:, j], np.histogram(train, edges)[0])
    assert spikes.t0 == 0.0 and spikes.bin_size == BIN
    assert spikes.activity.sum() == times.size  # the grid covers every spike
    # The grid ends in the bin holding the last event (spike or trial end): the file has
    # no other record of the recording's length, and the last 20 ms may hold no spike.
    last = max(times.max(), last_stop)
    assert edges[-2] <= last < edges[-1]
    assert spikes.n_bins <= round(CONFIG.duration_of(SESSION) / BIN)


def test_trials_neurons_and_meta(nwb_path: Path, sessions: dict):
    with h5py.File(nwb_path, "r") as f:
        trials = f["intervals/trials"]
        start, stop, onset = (trials[k][()] for k in ("start_time", "stop_time", "stim_on_time"))
        classes, choice = trials["stimulus_class"][()], trials["choice"][()]
        electrode = f["units/electrodes"][()]
        locations = f["general/extracellular_ephys/electrodes/location"][()].astype(str)
        rel_y = f["general/extracellular_ephys/electrodes/rel_y"][()]
        segmentation = f["processing/ophys/ImageSegmentation/PlaneSegmentation"]
        cre = segmentation["cre_line"][()].astype(str)
        roi_predictable = segmentation["predictable"][()]
    for result in sessions.values():
        expected = pd.DataFrame(
            {
                "start": start,
                "stop": stop,
                "align": onset,
                "stimulus_class": classes,
                "choice": choice,
            }
        )
        pd.testing.assert_frame_equal(result.trials, expected)
        meta = {k: v for k, v in result.meta.items() if not k.startswith("calcium_")}
        assert meta == {
            "dataset": "synthetic",
            "session": SESSION,
            "subject": "sub-02",
            "source_path": str(nwb_path),
            "source_sha256": hashlib.sha256(nwb_path.read_bytes()).hexdigest(),
            "software_version": result.meta["software_version"],
        }
        assert result.behavior_names == ["running_speed", "wheel_speed"]
    assert (
        sessions["calcium"].meta["calcium_series"] == "processing/ophys/DfOverF/RoiResponseSeries"
    )
    units = sessions["spikes"].neurons
    assert list(units["id"]) == [str(i) for i in range(CONFIG.n_units)]
    assert list(units["region"]) == list(locations[electrode])
    np.testing.assert_array_equal(units["depth"], rel_y[electrode])
    assert set(units["cre_line"]) == {"unknown"}
    rois = sessions["calcium"].neurons
    assert list(rois["cre_line"]) == list(cre)
    assert set(rois["region"]) == {CONFIG.regions[0]} and (rois["depth"] == 175.0).all()
    np.testing.assert_array_equal(sessions["calcium"].truth["predictable"], roi_predictable)


def test_behavior_is_resampled_at_bin_centres(nwb_path: Path, sessions: dict):
    with h5py.File(nwb_path, "r") as f:
        wheel_t = f["processing/behavior/wheel_speed/timestamps"][()]
        wheel = f["processing/behavior/wheel_speed/data"][()]
        running = f["processing/behavior/running_speed/data"][()]
    for result in sessions.values():
        centres = result.times + result.bin_size / 2
        running_t = np.arange(running.size) / 50.0
        inside = (centres >= wheel_t[0]) & (centres <= wheel_t[-1])
        np.testing.assert_allclose(
            result.behavior[inside, 1], np.interp(centres[inside], wheel_t, wheel), atol=1e-5
        )
        assert np.isnan(result.behavior[~inside, 1]).all()
        inside = centres <= running_t[-1]
        np.testing.assert_allclose(
            result.behavior[inside, 0], np.interp(centres[inside], running_t, running), atol=1e-4
        )


def test_ground_truth_matches_the_stored_generators(nwb_path: Path, sessions: dict):
    with h5py.File(nwb_path, "r") as f:
        rates = f["processing/ground_truth/true_rates/data"][()].astype(np.float64)
        signal = f["processing/ground_truth/true_calcium/data"][()]
        traces = f["processing/ophys/DfOverF/RoiResponseSeries/data"][()]
        unit_predictable = f["units/predictable"][()]
    spikes, calcium = sessions["spikes"], sessions["calcium"]
    # 20 ms bins over 10 ms rate samples: each bin integrates exactly two samples.
    two = rates[: 2 * spikes.n_bins].reshape(spikes.n_bins, 2, -1).sum(axis=1) * 0.01
    np.testing.assert_allclose(spikes.truth["rates"], two, rtol=1e-4, atol=1e-6)
    assert abs(spikes.activity.sum() / spikes.truth["rates"].sum() - 1) < 0.03
    np.testing.assert_array_equal(spikes.truth["predictable"], unit_predictable)
    np.testing.assert_array_equal(calcium.truth["signal"], signal)
    np.testing.assert_array_equal(calcium.activity, traces)
    assert calcium.bin_size == 1 / CONFIG.frame_rate and calcium.t0 == 0.5 / CONFIG.frame_rate
    for result in (spikes, calcium):
        latents = result.truth["latents"]
        assert latents.shape == (result.n_bins, 6) and np.isfinite(latents[:-1]).all()


def test_session_file_round_trip(sessions: dict, tmp_path: Path):
    for modality, result in sessions.items():
        path = tmp_path / f"{modality}.h5"
        write_session(result, path)
        back = read_session(path)
        np.testing.assert_array_equal(back.activity, result.activity)
        np.testing.assert_array_equal(back.behavior, result.behavior)
        assert (back.modality, back.bin_size, back.t0) == (modality, result.bin_size, result.t0)
        pd.testing.assert_frame_equal(back.neurons, result.neurons, check_dtype=False)
        pd.testing.assert_frame_equal(back.trials, result.trials)
        assert back.behavior_names == result.behavior_names and back.meta == result.meta
        assert back.truth.keys() == result.truth.keys()
        for key, value in result.truth.items():
            np.testing.assert_array_equal(back.truth[key], value)


# --- real-world NWB variation -------------------------------------------------------------


def minimal_nwb(
    path: Path,
    *,
    units: bool = True,
    ophys: str | None = None,
    onset_column: str | None = "stimOn_times",
    frame_times: np.ndarray | None = None,
    subject: bool = True,
) -> None:
    """A small file in layouts the synthetic source does not use (IBL-, Allen-, suite2p-like)."""
    nwbfile = NWBFile(
        session_description="test",
        identifier="test",
        session_start_time=datetime(2024, 1, 1, tzinfo=UTC),
        subject=Subject(
            subject_id="mouse7", species="Mus musculus", genotype="Sst-IRES-Cre/wt;Ai148/wt"
        )
        if subject
        else None,
    )
    if onset_column:
        nwbfile.add_trial_column(onset_column, "onset")
    nwbfile.add_trial_column("contrastLeft", "contrast")
    for k in range(3):
        extra = {onset_column: 1.2 + 2 * k} if onset_column else {}
        nwbfile.add_trial(
            start_time=1.0 + 2 * k, stop_time=2.5 + 2 * k, contrastLeft=0.25 * k, **extra
        )
    if units:  # no electrodes at all, as in many spike-sorted exports
        nwbfile.add_unit(spike_times=[0.5, 1.01, 3.3])
        nwbfile.add_unit(spike_times=[2.0, 6.9])
    module = nwbfile.create_processing_module("behavior", "behaviour")
    container = BehavioralTimeSeries(name="BehavioralTimeSeries")
    module.add(container)
    container.create_timeseries(
        name="PupilDiameter", data=np.linspace(1, 2, 50), unit="mm", rate=10.0, starting_time=1.0
    )
    if ophys:
        device = nwbfile.create_device(name="scope")
        plane = nwbfile.create_imaging_plane(
            name="plane",
            optical_channel=OpticalChannel(name="ch", description="green", emission_lambda=520.0),
            device=device,
            excitation_lambda=920.0,
            indicator="GCaMP6f",
            location="VISl",
        )
        ophys_module = nwbfile.create_processing_module("ophys", "ophys")
        segmentation_container = ImageSegmentation()
        ophys_module.add(segmentation_container)
        segmentation = segmentation_container.create_plane_segmentation(
            name="PlaneSegmentation", description="rois", imaging_plane=plane
        )
        segmentation.add_column("area", "per-ROI area (mesoscope)")
        for area in ("VISp", "VISal", ""):
            segmentation.add_roi(image_mask=np.ones((4, 4)), area=area)
        container = Fluorescence(name="Fluorescence")
        ophys_module.add(container)
        times = np.arange(100) / 10.0 if frame_times is None else frame_times
        container.create_roi_response_series(
            name="DfOverF",  # current neuroconv: dF/F named so inside a Fluorescence container
            data=np.outer(times, [1.0, 2.0, 3.0]),
            rois=segmentation.create_roi_table_region(description="all", region=[0, 1, 2]),
            unit="n.a.",
            timestamps=times,
        )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


def test_units_without_electrodes_and_ibl_trial_names(tmp_path: Path):
    path = tmp_path / "ibl_like.nwb"
    minimal_nwb(path)
    result = read(path, ("spikes",))["spikes"]
    assert list(result.neurons["region"]) == ["unknown", "unknown"]
    assert result.neurons["depth"].isna().all() and result.activity.sum() == 5
    assert list(result.trials.columns) == ["start", "stop", "align", "contrast_left"]
    np.testing.assert_allclose(result.trials["align"], [1.2, 3.2, 5.2])
    assert result.behavior_names == ["pupil_diameter"] and result.truth == {}
    assert result.t0 == 0.5 and result.meta["subject"] == "mouse7"


def test_fluorescence_with_dropped_frames_and_per_roi_areas(tmp_path: Path):
    path = tmp_path / "allen_like.nwb"
    frames = np.delete(np.arange(100) / 10.0, [40, 41])  # two dropped frames
    minimal_nwb(path, ophys="fluorescence", onset_column=None, frame_times=frames)
    result = read(path, ("calcium",))["calcium"]
    assert result.n_bins == 100 and result.bin_size == pytest.approx(0.1)
    np.testing.assert_allclose(result.activity[:, 2], 3 * result.times, atol=1e-5)
    assert list(result.neurons["region"]) == ["VISp", "VISal", "VISl"]
    assert set(result.neurons["cre_line"]) == {"Sst-IRES-Cre"}
    np.testing.assert_array_equal(result.trials["align"], result.trials["start"])


# --- malformed input: a clear error naming file and field, and no output ----------------


def corrupt_copy(source: Path, target: Path, edit) -> Path:
    shutil.copy(source, target)
    with h5py.File(target, "a") as f:
        edit(f)
    return target


def drop_frame_rate(f: h5py.File) -> None:
    del f["processing/ophys/DfOverF/RoiResponseSeries/starting_time"]


def ragged_index(f: h5py.File) -> None:
    f["units/spike_times_index"][-1] += 5


def unsorted_spikes(f: h5py.File) -> None:
    times = f["units/spike_times"]
    times[0], times[1] = times[1] + 1.0, times[0]


def nan_spike(f: h5py.File) -> None:
    f["units/spike_times"][3] = np.nan


def nan_trace(f: h5py.File) -> None:
    f["processing/ophys/DfOverF/RoiResponseSeries/data"][7, 3] = np.nan


@pytest.mark.parametrize(
    ("edit", "modalities", "field"),
    [
        (drop_frame_rate, ("calcium",), "processing/ophys/DfOverF/RoiResponseSeries"),
        (ragged_index, ("spikes",), "units/spike_times_index"),
        (nan_spike, ("spikes",), "units/spike_times"),
        (nan_trace, ("spikes", "calcium"), "processing/ophys/DfOverF/RoiResponseSeries/data"),
    ],
)
def test_corrupted_fields_fail_clearly(nwb_path, tmp_path, edit, modalities, field):
    bad = corrupt_copy(nwb_path, tmp_path / f"{edit.__name__}.nwb", edit)
    out = tmp_path / "out"
    with pytest.raises(NWBFormatError) as error:
        preprocess_and_write(bad, out, modalities)
    assert bad.name in str(error.value) and field in str(error.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_truncated_file_fails_clearly(nwb_path: Path, tmp_path: Path):
    bad = tmp_path / "truncated.nwb"
    bad.write_bytes(nwb_path.read_bytes()[: nwb_path.stat().st_size // 2])
    with pytest.raises(NWBFormatError, match=re.escape("truncated.nwb: field 'file'")):
        preprocess_and_write(bad, tmp_path / "out", ("spikes",))
    assert not (tmp_path / "out").exists()


def test_missing_modalities_and_subject_fail_clearly(tmp_path: Path):
    nothing = tmp_path / "nothing.nwb"
    minimal_nwb(nothing, units=False)
    with pytest.raises(NWBFormatError, match=r"nothing.nwb: field 'units\|processing/ophys'"):
        read(nothing, ("spikes",))
    spikes_only = tmp_path / "spikes_only.nwb"
    minimal_nwb(spikes_only)
    with pytest.raises(NWBFormatError, match=r"spikes_only.nwb: field 'processing/\*/DfOverF"):
        preprocess_and_write(spikes_only, tmp_path / "out", ("spikes", "calcium"))
    assert not (tmp_path / "out").exists()
    calcium_only = tmp_path / "calcium_only.nwb"
    minimal_nwb(calcium_only, units=False, ophys="fluorescence")
    with pytest.raises(NWBFormatError, match=re.escape("calcium_only.nwb: field 'units'")):
        read(calcium_only, ("spikes",))


# --- provenance and the cheap checks ------------------------------------------------------


def test_a_known_digest_is_recorded_without_hashing_again(
    nwb_path: Path, sessions: dict, monkeypatch: pytest.MonkeyPatch
):
    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} hashed although its digest was given")

    monkeypatch.setattr(nwb, "sha256_file", no_hashing)
    digest = hashlib.sha256(nwb_path.read_bytes()).hexdigest()
    spikes = nwb_to_sessions(
        nwb_path,
        dataset="synthetic",
        session=SESSION,
        modalities=["spikes"],
        spike_bin_size=BIN,
        source_sha256=digest,
    )["spikes"]
    assert spikes.meta == sessions["spikes"].meta
    np.testing.assert_array_equal(spikes.activity, sessions["spikes"].activity)
    for bad in ("abc", digest.upper(), digest + "0"):
        with pytest.raises(ValueError, match="source_sha256"):
            nwb_to_sessions(
                nwb_path,
                dataset="synthetic",
                session=SESSION,
                modalities=["spikes"],
                spike_bin_size=BIN,
                source_sha256=bad,
            )


def test_spike_checks_span_piece_boundaries(
    nwb_path: Path, sessions: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    with h5py.File(nwb_path, "r") as f:
        first_end = int(f["units/spike_times_index"][0])
    # Pieces ending exactly where unit 1 starts: the step back there is not an error.
    monkeypatch.setattr(nwb_units, "_CHECK_PIECE", first_end)
    spikes = read(nwb_path, ("spikes",))["spikes"]
    np.testing.assert_array_equal(spikes.activity, sessions["spikes"].activity)

    def swap_across_pieces(f: h5py.File) -> None:
        times = f["units/spike_times"]
        times[4], times[5] = times[5], times[4] - 1.0

    monkeypatch.setattr(nwb_units, "_CHECK_PIECE", 5)  # spikes 4 and 5 in different pieces
    bad = corrupt_copy(nwb_path, tmp_path / "swapped.nwb", swap_across_pieces)
    swapped = read(bad, ("spikes",))["spikes"]  # sorted back, the step across pieces found
    assert swapped.activity.sum() == spikes.activity.sum()


def test_unsorted_spike_times_are_sorted_with_one_warning(
    nwb_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    bad = corrupt_copy(nwb_path, tmp_path / "unsorted.nwb", unsorted_spikes)
    with caplog.at_level(logging.WARNING, logger="neurossl.data"):
        spikes = read(bad, ("spikes",))["spikes"]
    warnings = [r.getMessage() for r in caplog.records if "not sorted" in r.getMessage()]
    assert len(warnings) == 1 and "units/spike_times" in warnings[0] and bad.name in warnings[0]
    with h5py.File(bad, "r") as f:
        n_spikes = len(f["units/spike_times"])
    assert spikes.activity.sum() <= n_spikes


def test_all_finite_is_exact_across_blocks_and_overflow(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(session, "_FINITE_BLOCK", 7)
    big = np.full((5, 4), np.finfo(np.float32).max, dtype=np.float32)
    assert all_finite(big)  # block sums overflow to inf, yet every value is finite
    assert all_finite(np.zeros((0, 3), dtype=np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        for position in ((0, 0), (2, 3), (4, 3)):
            values = big.copy()
            values[position] = bad
            assert not all_finite(values)
            assert not all_finite(values.astype(np.float64))


def test_validate_rejects_non_finite_activity(sessions: dict):
    spikes = sessions["spikes"]
    broken = session.Session(**{**vars(spikes), "activity": spikes.activity.copy()})
    broken.activity[-1, -1] = np.inf
    with pytest.raises(SessionError, match="'activity' contains NaN or inf"):
        broken.validate()


# --- labs' files as they are: fallbacks, each logged once with file and field ------------


def warnings_about(caplog: pytest.LogCaptureFixture, field: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"field '{field}'" in r.getMessage()]


def test_missing_subject_id_falls_back_to_folder_then_session_id(tmp_path, caplog):
    folder = tmp_path / "sub-M7"
    folder.mkdir()
    in_folder = folder / "recording.nwb"
    minimal_nwb(in_folder, subject=False)
    assert read(in_folder, ("spikes",))["spikes"].meta["subject"] == "M7"
    (line,) = warnings_about(caplog, "general/subject/subject_id")
    assert str(in_folder) in line and "'M7'" in line
    caplog.clear()
    plain = tmp_path / "plain.nwb"
    minimal_nwb(plain, subject=False)
    assert read(plain, ("spikes",))["spikes"].meta["subject"] == SESSION
    assert "the session name" in warnings_about(caplog, "general/subject/subject_id")[0]


def spiking_nwb(path: Path, build) -> Path:
    """A spiking file whose units, electrodes and trials ``build(nwbfile)`` adds."""
    nwbfile = NWBFile(
        session_description="lab export",
        identifier=path.stem,
        session_start_time=datetime(2024, 1, 1, tzinfo=UTC),
        session_id="ses-42",
    )
    build(nwbfile)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def probe(nwbfile: NWBFile, locations: tuple[str, ...] = ("CA1", "DG", "LP")):
    device = nwbfile.create_device(name="probe")
    group = nwbfile.create_electrode_group("shank0", "shank", "VISp", device)
    for location in locations:
        nwbfile.add_electrode(group=group, location=location)
    return group


def test_nan_trial_stops_become_the_next_start(tmp_path, caplog):
    def build(nwbfile: NWBFile) -> None:
        nwbfile.add_trial_column("stim_on_time", "onset")
        for start, stop in ((1.0, 2.0), (3.0, np.nan), (5.0, 6.5), (8.0, np.nan)):
            nwbfile.add_trial(start_time=start, stop_time=stop, stim_on_time=start + 0.25)
        nwbfile.add_unit(spike_times=[0.5, 2.0, 9.0])

    path = spiking_nwb(tmp_path / "nan_stops.nwb", build)
    trials = read(path, ("spikes",))["spikes"].trials
    # Middle: the next start; last: align 8.25 + median align-to-stop span of (0.75, 1.25).
    np.testing.assert_allclose(trials["stop"], [2.0, 5.0, 6.5, 8.25 + 1.0])
    (line,) = warnings_about(caplog, "trials/stop_time")
    assert "nan_stops.nwb" in line and "2 of 4 NaN" in line


def test_units_without_electrodes_take_the_group_location(tmp_path, caplog):
    def build(nwbfile: NWBFile) -> None:
        group = probe(nwbfile)
        nwbfile.add_unit(spike_times=[0.5, 1.5], electrode_group=group)
        nwbfile.add_unit(spike_times=[1.0], electrode_group=group)

    path = spiking_nwb(tmp_path / "groups.nwb", build)
    neurons = read(path, ("spikes",))["spikes"].neurons
    assert neurons["region"].tolist() == ["VISp", "VISp"]
    (line,) = warnings_about(caplog, "units/electrode_group")
    assert "groups.nwb" in line


def test_electrodes_as_a_plain_table_region_and_the_peak_channel(tmp_path):
    def one_electrode_each(nwbfile: NWBFile) -> None:
        probe(nwbfile)
        nwbfile.add_unit(spike_times=[0.5, 1.5], electrodes=[2])
        nwbfile.add_unit(spike_times=[1.0], electrodes=[0])

    path = spiking_nwb(tmp_path / "plain_region.nwb", one_electrode_each)
    with h5py.File(path, "a") as f:  # as MatNWB writes it: a region with no ragged index
        del f["units/electrodes_index"]
        f["units"].attrs["colnames"] = [
            c for c in f["units"].attrs["colnames"] if c != "electrodes_index"
        ]
    assert read(path, ("spikes",))["spikes"].neurons["region"].tolist() == ["LP", "CA1"]

    with h5py.File(path, "a") as f:  # the same region, filed as the unit's electrode_group
        f["units"].move("electrodes", "electrode_group")
        f["units"].attrs["colnames"] = ["spike_times", "electrode_group"]
    assert read(path, ("spikes",))["spikes"].neurons["region"].tolist() == ["LP", "CA1"]

    def peak(nwbfile: NWBFile) -> None:
        probe(nwbfile)
        nwbfile.add_unit_column("max_electrode", "peak channel row")
        nwbfile.add_unit(spike_times=[0.5], electrodes=[0, 1, 2], max_electrode=1)
        nwbfile.add_unit(spike_times=[1.0], electrodes=[0, 1, 2], max_electrode=2)

    path = spiking_nwb(tmp_path / "peak.nwb", peak)
    assert read(path, ("spikes",))["spikes"].neurons["region"].tolist() == ["DG", "LP"]


def test_byte_string_labels_are_decoded(tmp_path):
    def build(nwbfile: NWBFile) -> None:
        probe(nwbfile, (b"CA1".decode(),) * 3)
        nwbfile.add_trial_column("side", "stimulus side")
        for k, side in enumerate((b"left", b"right")):
            nwbfile.add_trial(start_time=1.0 + 2 * k, stop_time=2.0 + 2 * k, side=side)
        nwbfile.add_unit(spike_times=[0.5, 3.5], electrodes=[0])

    path = spiking_nwb(tmp_path / "bytes.nwb", build)
    with h5py.File(path, "a") as f:  # as a MATLAB writer stores them: fixed-length bytes
        del f["intervals/trials/side"]
        f["intervals/trials"].create_dataset("side", data=np.array([b"left", b"right"]))
        f["intervals/trials/side"].attrs.update(
            {"neurodata_type": "VectorData", "namespace": "hdmf-common", "description": "side"}
        )
    result = read(path, ("spikes",))["spikes"]
    assert result.trials["side"].tolist() == ["left", "right"]
    assert all(type(v) is str for v in result.trials["side"])


def test_nwb1_files_are_named_as_unsupported(tmp_path):
    path = tmp_path / "old.nwb"
    with h5py.File(path, "w") as f:  # the root of an NWB 1.0.x file
        f.create_dataset("nwb_version", data=b"NWB-1.0.6")
        f.create_dataset("identifier", data=b"old")
        f.create_group("acquisition/timeseries")
    with pytest.raises(NWBFormatError, match=r"old\.nwb: field 'nwb_version'.*NWB 1\.x is not"):
        read(path, ("spikes",))


def test_spikes_before_the_session_start_are_dropped_with_a_warning(tmp_path, caplog):
    def build(nwbfile: NWBFile) -> None:
        nwbfile.add_unit(spike_times=[-50.0, -49.5, 0.5, 1.01, 3.3])
        nwbfile.add_unit(spike_times=[-10.0, 2.0, 6.9])

    path = spiking_nwb(tmp_path / "negative.nwb", build)
    result = read(path, ("spikes",))["spikes"]
    assert result.t0 == 0.0 and result.n_bins == 346  # 6.9 s lies in bin 345
    assert result.activity.sum(axis=0).tolist() == [3, 2]
    (line,) = warnings_about(caplog, "units/spike_times")
    assert "negative.nwb" in line and "3 spike(s) before t = 0 s" in line


def test_full_allen_names_become_acronyms_and_other_labels_stay(tmp_path):
    def build(nwbfile: NWBFile) -> None:
        probe(nwbfile, ("Field CA1", "dorsal hippocampus", "LP"))
        for row in range(3):
            nwbfile.add_unit(spike_times=[0.5 + row], electrodes=[row])

    path = spiking_nwb(tmp_path / "names.nwb", build)
    regions = read(path, ("spikes",))["spikes"].neurons["region"].tolist()
    assert regions == ["CA1", "dorsal hippocampus", "LP"]
