"""Small NWB files in the layouts of the real archives (IBL 000409, Allen 000728).

Group, table and column names follow those archives (see the module docstrings of
neurossl.data.sources.ibl / allen for where each name comes from); sizes are tiny.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.behavior import BehavioralTimeSeries
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject
from pynwb.image import GrayscaleImage, Images, IndexSeries
from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel

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


ALLEN_FRAME_RATE = 30.0
ALLEN_EPOCHS = (
    ("drifting_gratings", 0.0, 60.0),
    ("natural_scenes", 60.0, 90.0),
    ("natural_movie_one", 90.0, 120.0),
)


def write_allen_nwb(path: Path, subject: str, seed: int, epochs_table: bool = True) -> Path:
    """A Visual Coding ophys file: DfOverF, gratings/scenes/movie tables, running speed."""
    rng = np.random.default_rng(seed)
    nwbfile = NWBFile(
        session_description="Allen Brain Observatory Visual Coding",
        identifier=f"{subject}-{seed}",
        session_start_time=START,
        subject=Subject(
            subject_id=subject,
            species="Mus musculus",
            genotype="Sst-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt",
        ),
    )
    device = nwbfile.create_device(name="Microscope")
    channel = OpticalChannel(name="OpticalChannel", description="green", emission_lambda=520.0)
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        description="imaging depth 175 um",
        device=device,
        excitation_lambda=910.0,
        imaging_rate=ALLEN_FRAME_RATE,
        indicator="GCaMP6f",
        location="VISp",
    )
    ophys = nwbfile.create_processing_module("ophys", "optical physiology")
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    rois = segmentation.create_plane_segmentation(
        name="PlaneSegmentation", description="rois", imaging_plane=plane
    )
    n_rois = 6
    for k in range(n_rois):
        mask = np.zeros((8, 8))
        mask[k % 8, k // 8] = 1.0
        rois.add_roi(image_mask=mask, id=517000000 + k)
    duration = ALLEN_EPOCHS[-1][2]
    frames = np.arange(0.0, duration, 1.0 / ALLEN_FRAME_RATE)
    dff = rng.gamma(1.0, 0.1, (frames.size, n_rois)).astype(np.float32)
    region = rois.create_roi_table_region("all", region=list(range(n_rois)))
    ophys.add(DfOverF(name="DfOverF")).create_roi_response_series(
        name="DfOverF", data=dff, rois=region, unit="dF/F", timestamps=frames
    )
    behavior = nwbfile.create_processing_module("behavior", "behaviour")
    behavior.add(
        BehavioralTimeSeries(
            name="BehavioralTimeSeries",
            time_series=[
                TimeSeries(
                    name="running_speed",
                    data=rng.random(frames.size),
                    timestamps=frames,
                    unit="cm/s",
                )
            ],
        )
    )
    gratings = TimeIntervals(name="drifting_gratings", description="drifting gratings")
    for name in ("orientation", "temporal_frequency", "blank_sweep"):
        gratings.add_column(name=name, description=name)
    for k, t in enumerate(np.arange(0.0, 57.0, 3.0)):
        blank = float(k % 10 == 9)
        gratings.add_interval(
            start_time=t,
            stop_time=t + 2.0,
            orientation=float((k * 45) % 360) if not blank else np.nan,
            temporal_frequency=float((1, 2, 4, 8, 15)[k % 5]) if not blank else np.nan,
            blank_sweep=blank,
        )
    nwbfile.add_stimulus(gratings)
    template = Images(
        name="natural_scenes_template",
        description="scenes",
        images=[GrayscaleImage(name="scene0", data=np.zeros((4, 4)))],
    )
    nwbfile.add_stimulus_template(template)
    scene_times = np.arange(60.0, 89.9, 0.25)
    nwbfile.add_stimulus(
        IndexSeries(
            name="natural_scenes_stimulus",
            data=(np.arange(scene_times.size) % 118).astype(np.uint32),
            indexed_images=template,
            timestamps=scene_times,
            unit="N/A",
        )
    )
    movie_times = np.arange(90.0, 120.0, 1.0 / ALLEN_FRAME_RATE)
    nwbfile.add_stimulus(
        IndexSeries(
            name="natural_movie_one_stimulus",
            data=(np.arange(movie_times.size) % 900).astype(np.uint32),
            indexed_images=template,
            timestamps=movie_times,
            unit="N/A",
        )
    )
    if epochs_table:
        nwbfile.add_epoch_column(name="stimulus_type", description="stimulus of the block")
        for name, start, stop in ALLEN_EPOCHS:
            nwbfile.add_epoch(start_time=start, stop_time=stop, stimulus_type=name)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path
