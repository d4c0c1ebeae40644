"""Small NWB files in the layout of DANDI 000409's ``desc-processed`` files.

Every container and column mirrors what catalystneuro/IBL-to-nwb writes (paths below are
under its ``src/ibl_to_nwb/``); sizes are tiny, names and encodings are the converter's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hdmf.common import VectorData
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.behavior import SpatialSeries
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject

START = datetime(2024, 1, 1, tzinfo=UTC)
#: conversion/processed.py: the asset path of one session.
ASSET_PATH = "sub-{subject}/sub-{subject}_ses-{eid}_desc-processed_behavior+ecephys.nwb"

#: Probe channels: (full Allen CCF name as utils/electrodes.py writes ``location``,
#: the Allen acronym, IBL's Beryl acronym). Channel order runs from the tip upwards.
CHANNELS = (
    ("Field CA1", "CA1", "CA1"),
    ("Field CA1", "CA1", "CA1"),
    ("Field CA3", "CA3", "CA3"),
    ("Dentate gyrus molecular layer", "DG-mo", "DG"),
    ("Dentate gyrus molecular layer", "DG-mo", "DG"),
    ("root", "root", "unknown"),  # acronym_to_name keeps "root" as is
    ("Lateral posterior nucleus of the thalamus", "LP", "LP"),
    ("Lateral posterior nucleus of the thalamus", "LP", "LP"),
    ("void", "void", "unknown"),
    ("Anterior area layer 2/3", "VISa2/3", "VISa"),
    ("Anterior area layer 5", "VISa5", "VISa"),
    ("out-of-atlas", "out-of-atlas", "unknown"),  # convert_ibl_to_ccf3_coordinates
)
CHANNEL_PITCH_UM = 20.0  # rel_y step between channels in this fixture
#: Peak channel of each unit (``clusters.channels``), deliberately not the first channel
#: within 200 um, which is what ``units.electrodes`` starts with.
PEAK_CHANNELS = (1, 2, 4, 6, 7, 9, 10, 5)
EXPECTED_REGIONS = tuple(CHANNELS[c][2] for c in PEAK_CHANNELS)
EXPECTED_ALLEN = tuple(
    CHANNELS[c][1] if CHANNELS[c][2] != "unknown" else "unknown" for c in PEAK_CHANNELS
)
#: Trials that MtM's filters must drop (see ``ibl_trials``).
IBL_DROPPED_TRIALS = (1, 2, 3, 4, 5)


def ibl_trials(n_trials: int, seed: int) -> dict[str, np.ndarray]:
    """IBL trial events in ALF encoding (before the converter's tidy transformations)."""
    rng = np.random.default_rng(seed)
    start = 1.0 + np.arange(n_trials) * 3.0
    stim_on = start + 0.6
    rt = rng.uniform(0.15, 0.8, n_trials)
    rt[1] = 0.05  # too fast
    rt[2] = 2.5  # too slow
    first_movement = stim_on + rt
    first_movement[3] = np.nan  # missing event
    choice = rng.choice([-1.0, 1.0], n_trials)
    choice[4] = 0.0  # no-go
    feedback_time = first_movement + 0.1
    feedback_time[5] = np.nan  # missing event
    left = rng.random(n_trials) < 0.5
    contrast = rng.choice([0.0, 0.0625, 0.125, 0.25, 1.0], n_trials)
    contrast[0] = 0.0  # a 0% trial keeps its side
    return {
        "intervals_0": start,
        "intervals_1": start + 2.8,
        "stimOn_times": stim_on,
        "firstMovement_times": first_movement,
        "feedback_times": feedback_time,
        "choice": choice,
        "probabilityLeft": rng.choice([0.2, 0.5, 0.8], n_trials),
        "contrastLeft": np.where(left, contrast, np.nan),
        "contrastRight": np.where(left, np.nan, contrast),
        "feedbackType": rng.choice([-1.0, 1.0], n_trials),
    }


def _trials_table(alf: dict[str, np.ndarray]) -> TimeIntervals:
    """datainterfaces/_brainwide_map_trials_interface.py: TRIALS_COLUMNS and
    _apply_tidy_transformations (the columns MtM needs, in the converter's encodings)."""
    n = alf["choice"].size
    left = ~np.isnan(alf["contrastLeft"])
    columns = {
        "start_time": alf["intervals_0"],
        "stop_time": alf["intervals_1"],
        "gabor_stimulus_onset_time": alf["stimOn_times"],
        "auditory_cue_time": alf["stimOn_times"] + 0.001,
        "wheel_movement_onset_time": alf["firstMovement_times"],
        "feedback_time": alf["feedback_times"],
        # contrastLeft/contrastRight -> percent, rounded to 2 decimals, plus the side.
        "gabor_stimulus_contrast": np.round(
            100 * np.where(left, alf["contrastLeft"], alf["contrastRight"]), 2
        ),
        "gabor_stimulus_side": np.where(left, "left", "right"),
        # choice: -1 -> counter_clockwise, 0 -> none, +1 -> clockwise.
        "mouse_wheel_choice": np.array(
            [{-1.0: "counter_clockwise", 0.0: "none", 1.0: "clockwise"}[c] for c in alf["choice"]]
        ),
        # feedbackType == 1 -> True.
        "is_mouse_rewarded": alf["feedbackType"] == 1.0,
        "reward_volume_uL": np.where(alf["feedbackType"] == 1.0, 1.5, 0.0),
        "probability_left": alf["probabilityLeft"],
        "block_type": np.array(
            [
                {0.5: "unbiased", 0.8: "left_block", 0.2: "right_block"}[p]
                for p in alf["probabilityLeft"]
            ]
        ),
        "block_index": np.zeros(n, dtype=int),
    }
    return TimeIntervals(
        name="trials",
        description="Trial data from the IBL decision-making task.",
        columns=[VectorData(name=k, description=k, data=v) for k, v in columns.items()],
    )


def write_ibl_nwb(
    path: Path,
    subject: str,
    seed: int,
    *,
    eid: str = "00000000-0000-0000-0000-000000000000",
    n_trials: int = 24,
    wheel: bool = True,
    cameras: tuple[str, ...] = ("Left", "Right"),
) -> Path:
    """A desc-processed-like file; ``cameras`` lists the motion-energy views it has."""
    rng = np.random.default_rng(seed)
    nwbfile = NWBFile(
        session_description="IBL brain-wide map",
        identifier=f"{eid}-{seed}",
        session_start_time=START,
        session_id=eid,  # conversion/processed.py: session_id is the eid
        subject=Subject(subject_id=subject, species="Mus musculus", sex="M", age="P90D"),
    )
    # utils/electrodes.py add_probe_electrodes_with_localization: device and group
    # "Probe00" (location "Unresolved"), per-channel rel_x/rel_y, probe_name, and the
    # full CCF name in ``location``.
    device = nwbfile.create_device(name="Probe00", description="Neuropixels 1.0")
    group = nwbfile.create_electrode_group(
        "Probe00", "Electrode group for probe00", "Unresolved", device
    )
    for name in ("rel_x", "rel_y", "probe_name"):
        nwbfile.add_electrode_column(name=name, description=name)
    for channel, (location, _, _) in enumerate(CHANNELS):
        nwbfile.add_electrode(
            group=group,
            location=location,
            x=1000.0 + channel,
            y=3000.0,
            z=5000.0,
            rel_x=16.0 * (channel % 2),
            rel_y=CHANNEL_PITCH_UM * channel,
            probe_name="Probe00",
        )
    alf = ibl_trials(n_trials, seed)
    duration = float(alf["intervals_1"][-1] + 1.0)
    # datainterfaces/_ibl_sorting_interface.py UNITS_COLUMNS: electrodes = every channel
    # within 200 um of the peak (ascending), max_electrode = the peak channel's row,
    # distance_from_probe_tip_um = cluster depth.
    for name in ("cluster_uuid", "max_electrode", "distance_from_probe_tip_um", "firing_rate"):
        nwbfile.add_unit_column(name=name, description=name)
    for unit, peak in enumerate(PEAK_CHANNELS):
        near = [
            c
            for c in range(len(CHANNELS))
            if abs(c - peak) * CHANNEL_PITCH_UM <= 200.0 and c != peak
        ]
        n = rng.poisson(8.0 * duration)
        nwbfile.add_unit(
            spike_times=np.sort(rng.uniform(0, duration, n)),
            electrodes=sorted({*near, peak}),
            cluster_uuid=f"uuid-{unit}",
            max_electrode=peak,
            distance_from_probe_tip_um=CHANNEL_PITCH_UM * peak + 5.0,
            firing_rate=n / duration,
        )
    nwbfile.trials = _trials_table(alf)
    rate = 1000.0
    times = np.arange(0.0, duration, 1 / rate)
    wheel_module = nwbfile.create_processing_module("wheel", "Wheel kinematics.")
    # datainterfaces/_wheel_position_interface.py: raw, irregular position.
    wheel_module.add(
        SpatialSeries(
            name="WheelPosition",
            data=np.cumsum(np.sin(times[::7])) * 0.01,
            timestamps=times[::7],
            reference_frame="wheel",
            unit="radians",
        )
    )
    if wheel:
        # datainterfaces/_wheel_kinematics_interface.py: regular 1 kHz, starting_time + rate.
        wheel_module.add(
            TimeSeries(
                name="WheelVelocitySmoothed",
                data=np.sin(times),
                starting_time=0.0,
                rate=rate,
                unit="rad/s",
            )
        )
    motion = nwbfile.create_processing_module("motion_energy", "Motion energy.")
    frame_times = np.arange(0.0, duration, 1 / 60.0)
    for view, phase in (("Left", 0.0), ("Right", 1.0)):
        if view in cameras:
            # datainterfaces/_roi_motion_energy_interface.py: one series per camera.
            motion.add(
                TimeSeries(
                    name=f"{view}CameraMotionEnergy",
                    data=np.cos(frame_times + phase) ** 2,
                    timestamps=frame_times,
                    unit="a.u.",
                )
            )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path
