"""Small NWB files in the layout DANDI 000409 (IBL Brain Wide Map) files have.

Shared test fixtures; each field names the converter file it mirrors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.behavior import BehavioralTimeSeries
from pynwb.file import Subject

START = datetime(2024, 1, 1, tzinfo=UTC)
IBL_REGIONS = ("CA1", "CA1", "DG", "DG", "LP", "LP", "VISa", "VISa")

#: Trial column names of the two IBL layouts: (older single file, newer desc-processed).
IBL_TRIAL_NAMES = {
    "stim_on": ("stimOn_times", "stim_on_time"),
    "first_movement": ("firstMovement_times", "first_movement_time"),
    "choice": ("choice", "choice"),
    "probability_left": ("probabilityLeft", "probability_left"),
    "contrast_left": ("contrastLeft", "contrast_left"),
    "contrast_right": ("contrastRight", "contrast_right"),
    "feedback_type": ("feedbackType", "feedback_type"),
    "feedback_time": ("feedback_times", "feedback_time"),
}


def ibl_trials(n_trials: int, seed: int) -> dict[str, np.ndarray]:
    """Trial events with a few trials each MtM filter must drop (known rows)."""
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
    side = rng.random(n_trials) < 0.5
    contrast = rng.choice([0.0, 0.0625, 0.125, 0.25, 1.0], n_trials)
    return {
        "start_time": start,
        "stop_time": start + 2.8,
        "stim_on": stim_on,
        "first_movement": first_movement,
        "choice": choice,
        "probability_left": rng.choice([0.2, 0.5, 0.8], n_trials),
        "contrast_left": np.where(side, contrast, np.nan),
        "contrast_right": np.where(side, np.nan, contrast),
        "feedback_type": rng.choice([-1.0, 1.0], n_trials),
        "feedback_time": first_movement + 0.1,
    }


IBL_DROPPED_TRIALS = (1, 2, 3, 4)


def write_ibl_nwb(
    path: Path, layout: str, subject: str, seed: int, n_trials: int = 24, wheel: bool = True
) -> Path:
    """An IBL-like file; ``layout`` is 'legacy' (ALF names) or 'processed' (snake_case)."""
    column = {"legacy": 0, "processed": 1}[layout]
    rng = np.random.default_rng(seed)
    nwbfile = NWBFile(
        session_description="IBL brain-wide map",
        identifier=f"{subject}-{seed}",
        session_start_time=START,
        subject=Subject(subject_id=subject, species="Mus musculus"),
    )
    device = nwbfile.create_device(name="NeuropixelsProbe00")
    group = nwbfile.create_electrode_group("probe00", "probe", "brain", device)
    for region in IBL_REGIONS:
        nwbfile.add_electrode(group=group, location=region)
    trials = ibl_trials(n_trials, seed)
    duration = float(trials["stop_time"][-1] + 1.0)
    for unit, _ in enumerate(IBL_REGIONS):
        n = rng.poisson(8.0 * duration)
        nwbfile.add_unit(spike_times=np.sort(rng.uniform(0, duration, n)), electrodes=[unit])
    names = {key: pair[column] for key, pair in IBL_TRIAL_NAMES.items()}
    for key, name in names.items():
        nwbfile.add_trial_column(name=name, description=key)
    for i in range(n_trials):
        nwbfile.add_trial(
            start_time=trials["start_time"][i],
            stop_time=trials["stop_time"][i],
            **{names[key]: trials[key][i] for key in names},
        )
    times = np.arange(0.0, duration, 0.01)
    wheel_series = TimeSeries(
        name="WheelVelocity" if layout == "legacy" else "wheel_velocity",
        data=np.sin(times),
        timestamps=times,
        unit="rad/s",
    )
    whisker = TimeSeries(
        name="LeftCameraWhiskerMotionEnergy" if layout == "legacy" else "whisker_motion_energy",
        data=np.cos(times) ** 2,
        timestamps=times,
        unit="a.u.",
    )
    if layout == "legacy":
        behavior = nwbfile.create_processing_module("behavior", "behaviour")
        if wheel:
            behavior.add(BehavioralTimeSeries(time_series=[wheel_series], name="WheelMovement"))
        behavior.add(whisker)
    else:
        if wheel:
            nwbfile.create_processing_module("wheel", "wheel").add(wheel_series)
        nwbfile.create_processing_module("left_camera", "video").add(
            BehavioralTimeSeries(time_series=[whisker], name="LeftCameraMotionEnergy")
        )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path
