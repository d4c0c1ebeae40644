"""Small NWB files in the layout of DANDI 000728 (Allen Visual Coding ophys).

Built from the converter that wrote those files, catalystneuro/visual-coding-to-nwb-v2
(commit e92c56f), package ``visual_coding_to_nwb_v2/visual_coding_ophys``; each field
names the file it mirrors (``interfaces/`` omitted). Sizes are tiny; names, containers,
column lists, dtypes and the converter's quirks (literal ``{depth}``, uint32 scene
indices, the 3-row static-grating table) are as written there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hdmf.common import DynamicTable, VectorData
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.behavior import (
    BehavioralTimeSeries,
    CompassDirection,
    EyeTracking,
    PupilTracking,
    SpatialSeries,
)
from pynwb.device import Device
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject
from pynwb.image import GrayscaleImage, Image, Images, IndexSeries
from pynwb.ophys import (
    DfOverF,
    Fluorescence,
    ImageSegmentation,
    ImagingPlane,
    OpticalChannel,
    PlaneSegmentation,
    RoiResponseSeries,
)

START = datetime(2016, 2, 4, 10, 0, tzinfo=UTC)
ALLEN_FRAME_RATE = 30.0
#: Imaging frames do not start on stimulus onsets: _epochs.py puts epoch bounds on the
#: nearest imaging frame, so an epoch can start a few ms after its first presentation.
IMAGING_OFFSET = 0.011
#: A container listed in src/neurossl/data/sources/allen_imaging_depth.csv (175 um).
CONTAINER_ID = 511510736
CONTAINER_DEPTH = 175.0
N_SCENES = 6  # 118 in the real template stack; each scene shown equally often
#: (stimulus_type, start s, stop s) of each epoch; session A and session B protocols.
EPOCHS = {
    "A": (
        ("drifting_gratings", 0.0, 120.0),
        ("natural_movie_one", 120.0, 150.0),
        ("spontaneous", 150.0, 180.0),
        ("drifting_gratings", 180.0, 300.0),
    ),
    "B": (
        ("static_gratings", 0.0, 60.0),
        ("natural_scenes", 60.0, 120.0),
        ("natural_movie_one", 120.0, 150.0),
    ),
}
ALLEN_EPOCHS = EPOCHS["A"]
DG_ORIENTATIONS = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
DG_TEMPORAL_FREQUENCIES = (1.0, 2.0, 4.0, 8.0, 15.0)


def dg_presentations(epochs: tuple) -> np.ndarray:
    """Allen drifting-grating sweeps: (temporal_frequency, orientation, blank_sweep) rows,
    one every 3 s (2 s grating + 1 s grey), every 10th a blank with NaN parameters."""
    rows, times = [], []
    for name, start, stop in epochs:
        if name != "drifting_gratings":
            continue
        for t in np.arange(start, stop - 2.0, 3.0):
            k = len(rows)
            if k % 10 == 9:
                rows.append((np.nan, np.nan, 1.0))
            else:
                rows.append((DG_TEMPORAL_FREQUENCIES[k % 5], DG_ORIENTATIONS[k % 8], 0.0))
            times.append(t)
    return np.asarray(times), np.asarray(rows)


def write_allen_nwb(
    path: Path,
    subject: str,
    seed: int,
    *,
    stim: str = "A",
    epochs_table: bool = True,
    container_id: int = CONTAINER_ID,
    events: bool = True,
) -> Path:
    """One 000728 session file (protocol ``stim``: "A" drifting gratings, "B" static
    gratings and natural scenes)."""
    rng = np.random.default_rng(seed)
    experiment_id = 500000000 + seed
    epochs = EPOCHS[stim]
    duration = epochs[-1][2]
    nwbfile = NWBFile(
        session_description="Allen Brain Observatory Visual Coding.",
        identifier=f"{subject}-{seed}",
        session_start_time=START,
        # _general_metadata.py: f"{experiment_id}-Stim{reduced_session_type}"
        session_id=f"{experiment_id}-Stim{stim}",
        # _general_metadata.py: notes name the experiment container
        notes=(
            f"Container ID: {container_id}\nMouse ID (from genotype white paper): {subject}"
            f"\nSession type: three_session_{stim}"
        ),
        # _general_metadata.py: Subject fields
        subject=Subject(
            subject_id=subject,
            description="Mouse.",
            age="P100D",
            sex="M",
            species="Mus musculus",
            genotype="Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)",
        ),
    )
    # shared_methods/_shared_methods.py: add_imaging_device, add_imaging_plane (the
    # description is not an f-string: files hold the literal "{depth}")
    device = Device(name="Microscope", description="A Nikon A1R-MP multiphoton microscope.")
    nwbfile.add_device(device)
    plane = ImagingPlane(
        name="ImagingPlane",
        description=(
            "The imaging plane sampled by the two-photon calcium imaging at a depth of {depth} µm."
        ),
        excitation_lambda=910.0,
        indicator="GCaMP6f",
        grid_spacing=[0.78, 0.78],
        grid_spacing_unit="micrometers",
        location="VISp",
        device=device,
        optical_channel=OpticalChannel(
            name="OpticalChannel", description="green", emission_lambda=np.nan
        ),
    )
    nwbfile.add_imaging_plane(plane)
    _processed_ophys(nwbfile, plane, rng, duration, events)
    _running_speed(nwbfile, rng, duration)
    frames = IMAGING_OFFSET + np.arange(0.0, duration, 1.0 / ALLEN_FRAME_RATE)
    if stim == "A":
        _drifting_gratings(nwbfile, epochs)
    else:
        _static_gratings(nwbfile, epochs)
        _natural_scenes(nwbfile, epochs)
    _natural_movie(nwbfile, epochs)
    _spontaneous(nwbfile, epochs)
    if epochs_table:
        # _epochs.py: start/stop are DfOverF timestamps at the AllenSDK epoch frames
        table = TimeIntervals(name="epochs", description="Coarse grain experiment structure.")
        table.add_column(name="stimulus_type", description="Type of visual stimuli.")
        for name, start, stop in epochs:
            first = round(start * ALLEN_FRAME_RATE)
            last = min(round(stop * ALLEN_FRAME_RATE), frames.size - 1)
            table.add_interval(start_time=frames[first], stop_time=frames[last], stimulus_type=name)
        nwbfile.epochs = table
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _processed_ophys(
    nwbfile: NWBFile, plane: ImagingPlane, rng: np.random.Generator, duration: float, events: bool
) -> None:
    """_processed_ophys.py: SummaryImages, ImageSegmentation/PlaneSegmentation (id and
    global_roi_id = cell specimen id), Fluorescence {Neuropil, Corrected, Demixed},
    DfOverF {DfOverF, DfOverFEvents} as (frames x ROIs) with timestamps linked to
    Corrected, ContaminationRatios."""
    ophys = nwbfile.create_processing_module("ophys", "Contains processed optical physiology data.")
    ophys.add(
        Images(
            name="SummaryImages",
            description="Summary images.",
            images=[Image(name="maximum_intensity_projection", data=np.zeros((8, 8)))],
        )
    )
    segmentation = PlaneSegmentation(
        name="PlaneSegmentation", description="Segmented ROIs.", imaging_plane=plane
    )
    segmentation.add_column(name="global_roi_id", description="The global ID of each ROI.")
    n_rois = 8
    for k in range(n_rois):
        segmentation.add_roi(
            id=517400000 + k, pixel_mask=[(k, k, 1.0), (k, k + 1, 0.5)], global_roi_id=517400000 + k
        )
    ophys.add(ImageSegmentation(name="ImageSegmentation", plane_segmentations=segmentation))
    timestamps = IMAGING_OFFSET + np.arange(0.0, duration, 1.0 / ALLEN_FRAME_RATE)
    timestamps += rng.normal(0.0, 1e-4, timestamps.size)  # acquisition jitter
    region = segmentation.create_roi_table_region(
        region=list(range(n_rois)), description="The ROIs this series refers to."
    )
    neuropil = 300.0 + 10.0 * rng.random((timestamps.size, n_rois))
    corrected = RoiResponseSeries(
        name="Corrected",
        description="Fluorescence after demixing and subtraction of neuropil background.",
        data=500.0 + 50.0 * rng.random((timestamps.size, n_rois)),
        timestamps=timestamps,
        unit="n.a.",
        rois=region,
    )
    fluorescence = [
        RoiResponseSeries(
            name="Neuropil",
            description="Fluorescence contaminated by background neuropil.",
            data=neuropil,
            timestamps=corrected,
            unit="n.a.",
            rois=region,
        ),
        corrected,
        RoiResponseSeries(
            name="Demixed",
            description="Spatially demixed traces of potentially overlapping masks.",
            data=700.0 + 50.0 * rng.random((timestamps.size, n_rois)),
            timestamps=corrected,
            unit="n.a.",
            rois=region,
        ),
    ]
    ophys.add(Fluorescence(name="Fluorescence", roi_response_series=fluorescence))
    dff = [
        RoiResponseSeries(
            name="DfOverF",
            description="The normalized dF/F trace calculated using the AllenSDK.",
            data=rng.gamma(1.0, 0.1, (timestamps.size, n_rois)).astype(np.float32),
            timestamps=corrected,
            unit="a.u.",
            rois=region,
        )
    ]
    if events:
        dff.append(
            RoiResponseSeries(
                name="DfOverFEvents",
                description="Events from the dF/F detected using the L0 method.",
                data=np.where(rng.random((timestamps.size, n_rois)) < 0.01, 1.0, 0.0),
                timestamps=corrected,
                unit="a.u.",
                rois=region,
            )
        )
    ophys.add(DfOverF(name="DfOverF", roi_response_series=dff))
    ophys.add(
        DynamicTable(
            name="ContaminationRatios",
            description="Neuropil subtraction statistics.",
            columns=[
                VectorData(name="ratios", description="r", data=np.full(n_rois, 0.7)),
                VectorData(name="ratios_rmse", description="rmse", data=np.zeros(n_rois)),
            ],
        )
    )


def _running_speed(nwbfile: NWBFile, rng: np.random.Generator, duration: float) -> None:
    """_running_speed.py: behavior/BehavioralTimeSeries/running_speed (cm/s, timestamps);
    _pupil_tracking.py: PupilTracking/pupil_size (px, NaN on blinks); _eye_tracking.py:
    EyeTracking/pupil_location and CompassDirection/pupil_location_spherical (x, y)."""
    times = IMAGING_OFFSET + np.arange(0.0, duration, 1.0 / ALLEN_FRAME_RATE)
    module = nwbfile.create_processing_module("behavior", "Processed behavioral data.")
    module.add(
        BehavioralTimeSeries(
            time_series=TimeSeries(
                name="running_speed",
                description="Velocity of the subject over time.",
                data=rng.random(times.size) * 10.0,
                timestamps=times,
                unit="cm/s",
            )
        )
    )
    pupil = 20.0 + rng.random(times.size)
    pupil[100:130] = np.nan  # a blink
    module.add(
        PupilTracking(
            time_series=[
                TimeSeries(
                    name="pupil_size",
                    description="Size of pupil dilation in units pixels.",
                    data=pupil,
                    timestamps=times,
                    unit="px",
                )
            ]
        )
    )
    for container, name, unit in (
        (EyeTracking, "pupil_location", "m"),
        (CompassDirection, "pupil_location_spherical", "degrees"),
    ):
        module.add(
            container(
                spatial_series=SpatialSeries(
                    name=name,
                    description="Pupil position.",
                    data=rng.normal(0.0, 1.0, (times.size, 2)),
                    timestamps=times,
                    unit=unit,
                    reference_frame="(0,0) is the center of the monitor.",
                )
            )
        )


def _drifting_gratings(nwbfile: NWBFile, epochs: tuple) -> None:
    """_drifting_grating_stimulus.py: stimulus/drifting_gratings, 2 s per sweep."""
    table = TimeIntervals(name="drifting_gratings", description="Drifting gratings.")
    table.add_column(name="orientation_in_degrees", description="NaN on a blank sweep.")
    table.add_column(name="spatial_frequency_in_cycles_per_degree", description="cyc/deg")
    table.add_column(name="temporal_frequency_in_hz", description="NaN on a blank sweep.")
    table.add_column(name="is_blank_sweep", description="Mean luminance gray image.")
    times, rows = dg_presentations(epochs)
    for t, (temporal_frequency, orientation, blank) in zip(times, rows, strict=True):
        table.add_interval(
            start_time=t,
            stop_time=t + 2.0,
            orientation_in_degrees=orientation,
            spatial_frequency_in_cycles_per_degree=0.04,
            temporal_frequency_in_hz=temporal_frequency,
            is_blank_sweep=bool(blank),
        )
    nwbfile.add_stimulus(table)


def _static_gratings(nwbfile: NWBFile, epochs: tuple) -> None:
    """_static_grating_stimulus.py: stimulus/static_gratings, 0.25 s per sweep. The
    converter's blank flag is ``isnan(data)[0] & isnan(data)[1] & isnan(data)[2]`` (rows
    0-2, a 3-vector), and zip() with it stops after 3 rows: mirrored here."""
    table = TimeIntervals(name="static_gratings", description="Static gratings.")
    for column in (
        "orientation_in_degrees",
        "spatial_frequency_in_cycles_per_degree",
        "phase",
        "is_blank_sweep",
    ):
        table.add_column(name=column, description=column)
    _, start, stop = next(e for e in epochs if e[0] == "static_gratings")
    times = np.arange(start, stop, 0.25)
    data = np.array(
        [
            (np.nan, np.nan, np.nan)
            if k % 25 == 1
            else ((0.0, 30.0, 60.0)[k % 3], (0.02, 0.04, 0.08)[k % 3], 0.25 * (k % 4))
            for k in range(times.size)
        ]
    )
    nan = np.isnan(data)
    blank_sweeps = nan[0] & nan[1] & nan[2]
    for t, (orientation, spatial_frequency, phase), blank in zip(times, data, blank_sweeps):  # noqa: B905
        table.add_interval(
            start_time=t,
            stop_time=t + 0.25,
            orientation_in_degrees=orientation,
            spatial_frequency_in_cycles_per_degree=spatial_frequency,
            phase=phase,
            is_blank_sweep=bool(blank),
        )
    nwbfile.add_stimulus(table)


def scene_sequence(n_presentations: int) -> np.ndarray:
    """Allen natural-scene frames: each scene equally often, blank (-1) as often as one."""
    frames = np.arange(n_presentations) % (N_SCENES + 1) - 1  # -1, 0, 1, ..., N_SCENES - 1
    return np.random.default_rng(0).permutation(frames)


def _natural_scenes(nwbfile: NWBFile, epochs: tuple) -> None:
    """_natural_scenes_stimulus.py: stimulus_template natural_scenes_template (Images of
    NaturalScene{k}) and stimulus/natural_scenes_stimulus IndexSeries, data cast to uint32
    from the h5py dataset (HDF5 clips the blank's -1 to 0)."""
    images = Images(
        name="natural_scenes_template",
        description="A collection of natural scenes presented to the subject.",
        images=[
            GrayscaleImage(name=f"NaturalScene{k}", data=np.full((4, 4), k, dtype=np.uint8))
            for k in range(N_SCENES)
        ],
    )
    nwbfile.add_stimulus_template(images)
    _, start, stop = next(e for e in epochs if e[0] == "natural_scenes")
    times = np.arange(start, stop, 0.25)
    frames = np.clip(scene_sequence(times.size), 0, None).astype(np.uint32)
    nwbfile.add_stimulus(
        IndexSeries(
            name="natural_scenes_stimulus",
            description="The order and timing for presentation of the natural scene templates.",
            data=frames,
            indexed_images=images,
            unit="N/A",  # the converter wrote "n.a."; pynwb 4 only writes "N/A" (reads both)
            timestamps=times,
        )
    )


def _natural_movie(nwbfile: NWBFile, epochs: tuple) -> None:
    """_natural_movie_stimulus.py: stimulus_template natural_movie_one and
    stimulus/natural_movie_one_stimulus IndexSeries (uint32 frame per 30 Hz)."""
    nwbfile.add_device(Device(name="StimulusDisplay", description="An ASUS PA248Q monitor."))
    # The converter's template is an ImageSeries linked through indexed_timeseries, which
    # pynwb 4 reads but no longer writes; an Images stack stands in (the reader reads only
    # the IndexSeries' data and timestamps).
    template = Images(
        name="natural_movie_one",
        description="A natural movie presented to the subject.",
        images=[GrayscaleImage(name=f"frame{k}", data=np.zeros((4, 4))) for k in range(30)],
    )
    nwbfile.add_stimulus_template(template)
    _, start, stop = next(e for e in epochs if e[0] == "natural_movie_one")
    times = np.arange(start, stop, 1.0 / ALLEN_FRAME_RATE)
    nwbfile.add_stimulus(
        IndexSeries(
            name="natural_movie_one_stimulus",
            description="The order and timing for presentation of frames from the movie.",
            data=(np.arange(times.size) % 30).astype(np.uint32),
            indexed_images=template,
            unit="N/A",  # as for natural scenes
            timestamps=times,
        )
    )


def _spontaneous(nwbfile: NWBFile, epochs: tuple) -> None:
    """_spontaneous_stimulus.py: stimulus/spontaneous_stimulus (start/stop only)."""
    table = TimeIntervals(name="spontaneous_stimulus", description="Mean luminance gray image.")
    for name, start, stop in epochs:
        if name == "spontaneous":
            table.add_interval(start_time=start, stop_time=stop)
    if len(table):
        nwbfile.add_stimulus(table)
