"""IBL 000409 reader on files in the converter's desc-processed layout, field by field."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from real_layouts_ibl import (
    CHANNEL_PITCH_UM,
    EXPECTED_ALLEN,
    EXPECTED_REGIONS,
    IBL_DROPPED_TRIALS,
    PEAK_CHANNELS,
    ibl_trials,
    write_ibl_nwb,
)

from neurossl.data.nwb_fields import NWBFormatError
from neurossl.data.sources.ibl import IBLOptions, read_ibl_session

N_TRIALS = 24
KEPT = np.setdiff1d(np.arange(N_TRIALS), IBL_DROPPED_TRIALS)


def read(path: Path, **options) -> object:
    return read_ibl_session(
        path, dataset="ibl", session="eid", spike_bin_size=0.02, options=IBLOptions(**options)
    )


@pytest.fixture(scope="module")
def session_and_truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    path = write_ibl_nwb(tmp_path_factory.mktemp("ibl") / "s.nwb", "CSHL049", seed=7)
    return read(path), ibl_trials(N_TRIALS, seed=7)


def test_trial_labels_are_ibls_numbers(session_and_truth) -> None:
    session, alf = session_and_truth
    trials = session.trials
    assert len(trials) == KEPT.size
    np.testing.assert_allclose(trials["align"], alf["stimOn_times"][KEPT])
    np.testing.assert_allclose(trials["first_movement_time"], alf["firstMovement_times"][KEPT])
    np.testing.assert_allclose(trials["start"], alf["intervals_0"][KEPT])
    np.testing.assert_allclose(trials["stop"], alf["intervals_1"][KEPT])
    # IBL's choice: +1 clockwise, -1 counter-clockwise (the converter's own mapping).
    np.testing.assert_array_equal(trials["choice"], alf["choice"][KEPT])
    np.testing.assert_array_equal(trials["feedback_type"], alf["feedbackType"][KEPT])
    np.testing.assert_allclose(trials["block"], alf["probabilityLeft"][KEPT])
    signed = np.nan_to_num(alf["contrastRight"]) - np.nan_to_num(alf["contrastLeft"])
    np.testing.assert_allclose(trials["signed_contrast"], signed[KEPT])
    np.testing.assert_allclose(trials["contrast"], np.abs(signed[KEPT]))
    np.testing.assert_allclose(
        trials["reaction_time"], (alf["firstMovement_times"] - alf["stimOn_times"])[KEPT]
    )


def test_regions_and_depth_come_from_the_peak_channel(session_and_truth, tmp_path) -> None:
    session, _ = session_and_truth
    assert session.neurons["region"].tolist() == list(EXPECTED_REGIONS)
    depth = [CHANNEL_PITCH_UM * c + 5.0 for c in PEAK_CHANNELS]
    np.testing.assert_allclose(session.neurons["depth"], depth)
    path = write_ibl_nwb(tmp_path / "allen.nwb", "CSHL049", seed=7)
    allen = read(path, region_mapping="Allen")
    assert allen.neurons["region"].tolist() == list(EXPECTED_ALLEN)
    cosmos = read(path, region_mapping="Cosmos").neurons["region"].tolist()
    assert cosmos[:3] == ["HPF", "HPF", "HPF"] and cosmos[-1] == "unknown"


def test_behaviour_and_meta(session_and_truth) -> None:
    session, _ = session_and_truth
    assert session.modality == "spikes" and session.bin_size == 0.02
    assert session.meta["subject"] == "CSHL049"
    assert session.behavior_names == ["wheel_speed", "whisker_motion_energy"]
    centres = session.times + 0.01
    inside = centres < 70.0
    np.testing.assert_allclose(
        session.behavior[inside, 0], np.abs(np.sin(centres[inside])), atol=2e-3
    )
    np.testing.assert_allclose(session.behavior[inside, 1], np.cos(centres[inside]) ** 2, atol=5e-3)
    assert session.meta["whisker_motion_energy_source"].endswith("LeftCameraMotionEnergy")
    assert (session.activity.sum(axis=0) > 0).all()


def test_right_camera_stands_in_for_a_missing_left(tmp_path, caplog) -> None:
    path = write_ibl_nwb(tmp_path / "right.nwb", "KS014", seed=2, cameras=("Right",))
    with caplog.at_level(logging.WARNING):
        session = read(path)
    assert session.meta["whisker_motion_energy_source"] == (
        "processing/motion_energy/RightCameraMotionEnergy"
    )
    centres = session.times + 0.01
    inside = centres < 70.0
    np.testing.assert_allclose(
        session.behavior[inside, 1], np.cos(centres[inside] + 1.0) ** 2, atol=5e-3
    )
    lines = [r.getMessage() for r in caplog.records if "LeftCameraMotionEnergy" in r.getMessage()]
    assert len(lines) == 1 and "right.nwb" in lines[0] and "RightCameraMotionEnergy" in lines[0]


def test_missing_behaviour_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = write_ibl_nwb(tmp_path / "s.nwb", "KS014", seed=2, wheel=False, cameras=())
    with pytest.raises(NWBFormatError, match=r"s\.nwb: field 'processing/wheel.*wheel_speed"):
        read(path)
    session = read(path, require_behavior=False)
    assert session.behavior_names == [] and "whisker_motion_energy_source" not in session.meta


def test_a_file_without_the_converters_trial_columns_names_them(tmp_path: Path) -> None:
    import h5py

    path = write_ibl_nwb(tmp_path / "old.nwb", "KS014", seed=2)
    with h5py.File(path, "a") as f:  # a stimulus onset under another name
        f["intervals/trials"].move("gabor_stimulus_onset_time", "stimOn_times")
        f["intervals/trials"].attrs["colnames"] = [
            "stimOn_times" if c == "gabor_stimulus_onset_time" else c
            for c in f["intervals/trials"].attrs["colnames"]
        ]
    with pytest.raises(NWBFormatError, match=r"old\.nwb: field 'trials/gabor_stimulus_onset_time'"):
        read(path)


def test_strict_filters_keep_fewer_trials(session_and_truth, tmp_path) -> None:
    session, _ = session_and_truth
    path = write_ibl_nwb(tmp_path / "s.nwb", "CSHL049", seed=7)
    strict = read(path, min_reaction_time=0.5)
    assert (strict.trials["reaction_time"] >= 0.5).all()
    assert len(strict.trials) < len(session.trials)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        IBLOptions.from_dict({"max_rt": 2})
    with pytest.raises(ValueError, match="min_reaction_time < max_reaction_time"):
        IBLOptions.from_dict({"min_reaction_time": 3.0})
    with pytest.raises(ValueError, match="region_mapping must be one of"):
        IBLOptions.from_dict({"region_mapping": "beryl"})
