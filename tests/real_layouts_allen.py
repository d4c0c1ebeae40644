"""Small NWB files in the layout DANDI 000728 (Allen Visual Coding ophys) files have.

Shared test fixtures; each field names the converter file it mirrors.
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
