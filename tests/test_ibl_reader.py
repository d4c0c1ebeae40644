"""IBL 000409 reader: both NWB layouts, MtM trial filters, behaviour, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from real_layouts_ibl import IBL_DROPPED_TRIALS, IBL_REGIONS, ibl_trials, write_ibl_nwb

from neurossl.data.nwb_fields import NWBFormatError
from neurossl.data.sources.ibl import IBLOptions, canonical_trials, mtm_trial_mask, read_ibl_session


@pytest.mark.parametrize("layout", ["legacy", "processed"])
def test_both_layouts_give_the_same_session(layout: str, tmp_path: Path) -> None:
    path = write_ibl_nwb(tmp_path / f"{layout}.nwb", layout, "CSHL049", seed=7)
    session = read_ibl_session(
        path, dataset="ibl", session="eid", spike_bin_size=0.02, options=IBLOptions()
    )
    truth = ibl_trials(24, seed=7)
    kept = np.setdiff1d(np.arange(24), IBL_DROPPED_TRIALS)
    assert session.modality == "spikes" and session.bin_size == 0.02
    assert session.neurons["region"].tolist() == list(IBL_REGIONS)
    assert session.meta["subject"] == "CSHL049"
    np.testing.assert_allclose(session.trials["align"], truth["stim_on"][kept])
    np.testing.assert_allclose(session.trials["choice"], truth["choice"][kept])
    np.testing.assert_allclose(session.trials["block"], truth["probability_left"][kept])
    np.testing.assert_allclose(session.trials["feedback_type"], truth["feedback_type"][kept])
    signed = np.nan_to_num(truth["contrast_right"]) - np.nan_to_num(truth["contrast_left"])
    np.testing.assert_allclose(session.trials["signed_contrast"], signed[kept])
    assert session.behavior_names == ["wheel_speed", "whisker_motion_energy"]
    centres = session.times + 0.01
    inside = centres < 70.0
    wheel = session.behavior[inside, 0]
    np.testing.assert_allclose(wheel, np.abs(np.sin(centres[inside])), atol=2e-3)
    assert (session.activity.sum(axis=0) > 0).all()


def test_mtm_filters_drop_exactly_the_bad_trials(tmp_path: Path) -> None:
    raw = ibl_trials(24, seed=3)
    trials = pd.DataFrame(
        {
            "start": raw["start_time"],
            "stop": raw["stop_time"],
            "align": raw["stim_on"],
            "first_movement_times": raw["first_movement"],
            **{k: raw[k] for k in ("choice", "probability_left", "contrast_left")},
            **{k: raw[k] for k in ("contrast_right", "feedback_type", "feedback_time")},
        }
    )
    canon = canonical_trials(trials, tmp_path / "x.nwb")
    keep = mtm_trial_mask(canon, IBLOptions())
    assert np.flatnonzero(~keep).tolist() == list(IBL_DROPPED_TRIALS)
    strict = mtm_trial_mask(canon, IBLOptions(min_reaction_time=0.5))
    assert (canon["reaction_time"][strict] >= 0.5).all() and strict.sum() < keep.sum()


def test_missing_trial_column_names_file_and_field(tmp_path: Path) -> None:
    trials = pd.DataFrame({"start": [0.0], "stop": [1.0], "align": [0.5], "choice": [1.0]})
    with pytest.raises(NWBFormatError, match=r"x\.nwb: field 'trials/first_movement_time'"):
        canonical_trials(trials, tmp_path / "x.nwb")


def test_missing_behaviour_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = write_ibl_nwb(tmp_path / "s.nwb", "processed", "KS014", seed=2, wheel=False)
    with pytest.raises(NWBFormatError, match=r"s\.nwb: field 'processing/\*'.*wheel_speed"):
        read_ibl_session(path, dataset="d", session="s", spike_bin_size=0.02, options=IBLOptions())
    session = read_ibl_session(
        path,
        dataset="d",
        session="s",
        spike_bin_size=0.02,
        options=IBLOptions(require_behavior=False),
    )
    assert session.behavior_names == ["whisker_motion_energy"]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        IBLOptions.from_dict({"max_rt": 2})
    with pytest.raises(ValueError, match="min_reaction_time < max_reaction_time"):
        IBLOptions.from_dict({"min_reaction_time": 3.0})
