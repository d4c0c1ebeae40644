"""The embedded default dataset: small synthetic sessions written as real NWB files.

Synthetic sessions go through the same NWB -> Session path as public data, so the
reader is exercised on every default run, and they carry their ground truth so every
metric has an oracle ceiling. The generative model lives in ``synthetic_model``.

Layout of one file (all times in seconds from ``session_start_time``; ``T_fine`` is the
ground-truth grid of ``synthetic_model.FINE_DT`` = 10 ms starting at 0):

- ``subject``: subject_id ``sub-XX``, Mus musculus, age, sex.
- ``trials``: start_time, stop_time, ``stim_on_time`` (start + 0.5 s), ``stimulus_class``
  (int, 0..C-1), ``choice`` (-1/+1).
- ``electrodes``: one per unit, ``location`` = Allen acronym of its region, ``rel_y`` =
  position along the probe (um), one ElectrodeGroup per region.
- ``units``: ``spike_times`` (ragged, sorted per unit), ``electrodes`` (one each),
  ``predictable`` (bool).
- ``processing/behavior``: TimeSeries ``wheel_speed`` (rad/s, irregular ~60 Hz
  timestamps) and ``running_speed`` (cm/s, 50 Hz ``rate``): both off the spike and frame
  grids, so the preprocessor has to resample.
- ``processing/ophys``: ImageSegmentation/PlaneSegmentation ``PlaneSegmentation``
  (16x16 ``image_mask`` per ROI, columns ``cre_line``, ``imaging_depth`` (um),
  ``predictable``) on ImagingPlane ``ImagingPlane`` (location = first region) and
  DfOverF/RoiResponseSeries ``RoiResponseSeries`` [frames, ROIs] at ``frame_rate`` Hz
  from ``starting_time`` = half a frame.
- ``processing/ground_truth``:
  ``true_rates`` [T_fine, units] Hz, piecewise constant per 10 ms bin (spikes are an exact
  Poisson draw from it, so expected counts of a bin = its integral);
  ``true_calcium`` [frames, ROIs] noise-free dF/F on exactly the RoiResponseSeries grid;
  ``latents`` [T_fine, 6] (rotation_1/2, slow_oscillation, lorenz_x/y/z), rate 100 Hz.
  Omitted when ``SyntheticConfig.ground_truth`` is False (real-data-like files).
"""

from __future__ import annotations

import dataclasses
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from hdmf.common import DynamicTableRegion, VectorData, VectorIndex
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.file import Subject
from pynwb.misc import Units
from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel

from neurossl.atomic import atomic_path
from neurossl.data.resample import interpolate
from neurossl.data.sources import synthetic_model as model
from neurossl.data.sources.synthetic_config import SyntheticConfig, session_ids

#: Cre lines of the POYO-SSL "predictable" group (interneurons, deep layer 6) and of
#: the excitatory lines that dominate its unpredictable group.
PREDICTABLE_CRE_LINES = ("Sst-IRES-Cre", "Vip-IRES-Cre", "Pvalb-IRES-Cre", "Ntsr1-Cre_GN220")
UNPREDICTABLE_CRE_LINES = ("Cux2-CreERT2", "Rorb-IRES2-Cre", "Slc17a7-IRES2-Cre")
_IMAGING_GRID = 16
_IMAGING_DEPTH_UM = 175.0
_WHEEL_RATE = 60.0
_RUNNING_RATE = 50.0
_FIRST_SESSION = datetime(2024, 3, 4, 9, 30, tzinfo=UTC)


def write_session_nwb(config: SyntheticConfig, session_id: str, path: str | Path) -> None:
    """Generate one session and write it atomically as NWB."""
    ids = session_ids(config)
    if session_id not in ids:
        raise ValueError(f"unknown synthetic session {session_id!r}; expected one of {ids}")
    nwbfile = _build_nwbfile(config, session_id, ids.index(session_id))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The temporary name ends in .tmp by design; pynwb would warn it lacks .nwb.
        warnings.filterwarnings("ignore", message="The file path provided", category=UserWarning)
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwbfile)


def _build_nwbfile(config: SyntheticConfig, session_id: str, index: int) -> NWBFile:
    world = model.make_world(config.seed, config.n_stimulus_classes, len(config.regions))
    rng = {
        name: model.session_rng(config.seed, session_id, i)
        for i, name in enumerate(
            ("trials", "latents", "choice", "units", "spikes", "rois", "calcium", "behavior")
        )
    }
    trials = model.make_trials(
        rng["trials"],
        config.trials_of(session_id),
        config.trial_duration,
        config.iti,
        config.n_stimulus_classes,
    )
    t = model.fine_times(config.duration_of(session_id))
    latents = model.make_latents(world, trials, rng["latents"], t)
    trials = dataclasses.replace(
        trials, choice=model.choices(world, trials, latents, rng["choice"])
    )
    shared = {"predictable_fraction": config.predictable_fraction, "base_rate": config.base_rate}
    units = model.make_population(
        world,
        trials,
        latents,
        rng["units"],
        n=config.n_units,
        modulation=config.modulation,
        **shared,
    )
    rois = model.make_population(
        world,
        trials,
        latents,
        rng["rois"],
        n=config.n_rois,
        modulation=config.roi_modulation,
        sparse_gain=config.roi_sparse_gain,
        stimulus_share=config.roi_stimulus_share,
        **shared,
    )

    subject_id = session_id.split("_")[0]
    nwbfile = NWBFile(
        session_description=(
            "Synthetic session: latent-driven spiking units, calcium ROIs, trials and "
            "behaviour with ground truth, for benchmarking self-supervised pretraining."
        ),
        identifier=str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"neurossl/synthetic/{config.seed}/{session_id}")
        ),
        session_start_time=_FIRST_SESSION + timedelta(days=index),
        session_id=session_id,
        institution="neurossl synthetic data generator",
        lab="neurossl",
        experimenter=["Generator, Synthetic"],
        keywords=["synthetic", "self-supervised learning", "spiking", "calcium imaging"],
        experiment_description=(
            f"Seed {config.seed}; {config.n_stimulus_classes} stimulus classes; "
            f"{config.predictable_fraction:.0%} of neurons predictable by construction."
        ),
        subject=Subject(
            subject_id=subject_id,
            species="Mus musculus",
            sex="F" if int(subject_id[4:]) % 2 else "M",
            age="P90D",
            description="Simulated mouse.",
        ),
    )
    _add_trials(nwbfile, trials)
    _add_units(nwbfile, config, units, rng["spikes"])
    frames = _frame_times(config, config.duration_of(session_id))
    true_calcium = interpolate(t, model.calcium_from_counts(rois.counts), frames)
    _add_ophys(nwbfile, config, rois, true_calcium, frames[0], rng["calcium"])
    _add_behavior(nwbfile, world, latents, t, rng["behavior"])
    if config.ground_truth:
        _add_truth(nwbfile, config, units.rates, true_calcium, frames[0], latents)
    return nwbfile


def _add_trials(nwbfile: NWBFile, trials: model.Trials) -> None:
    nwbfile.add_trial_column("stim_on_time", "Stimulus onset (s).")
    nwbfile.add_trial_column("stimulus_class", "Index of the presented stimulus class.")
    nwbfile.add_trial_column("choice", "Reported choice, -1 or +1, read out from the latents.")
    for i in range(trials.start.size):
        nwbfile.add_trial(
            start_time=float(trials.start[i]),
            stop_time=float(trials.stop[i]),
            stim_on_time=float(trials.stim_on[i]),
            stimulus_class=int(trials.stimulus_class[i]),
            choice=int(trials.choice[i]),
        )


def _add_units(
    nwbfile: NWBFile, config: SyntheticConfig, units: model.Population, rng: np.random.Generator
) -> None:
    device = nwbfile.create_device(
        name="probe", description="Simulated single-shank silicon probe."
    )
    groups = [
        nwbfile.create_electrode_group(
            name=f"shank_{region}",
            description=f"Probe sites in {region}.",
            location=region,
            device=device,
        )
        for region in config.regions
    ]
    region_depth = 400.0 * units.region_index + rng.uniform(0, 380, units.region_index.size)
    for j, r in enumerate(units.region_index):
        nwbfile.add_electrode(
            location=config.regions[r], group=groups[r], rel_y=float(region_depth[j])
        )
    # Columns are built from flat arrays: add_unit() per unit makes hdmf convert every
    # spike time one by one on write, minutes for a long recording.
    times, ends = model.spike_times(units.counts, rng)
    spike_times = VectorData(name="spike_times", description="Spike times (s).", data=times)
    electrodes = DynamicTableRegion(
        name="electrodes",
        description="The electrode each unit was recorded on.",
        data=np.arange(config.n_units),
        table=nwbfile.electrodes,
    )
    columns = [
        spike_times,
        VectorIndex(name="spike_times_index", data=ends, target=spike_times),
        electrodes,
        VectorIndex(
            name="electrodes_index", data=np.arange(1, config.n_units + 1), target=electrodes
        ),
    ]
    if config.ground_truth:
        columns.append(
            VectorData(
                name="predictable",
                description="Whether the unit is latent-driven by construction.",
                data=units.predictable,
            )
        )
    nwbfile.units = Units(
        name="units",
        description="Simulated single units on a 30 kHz clock.",
        id=np.arange(config.n_units),
        columns=columns,
        electrode_table=nwbfile.electrodes,
        resolution=1.0 / model.SPIKE_CLOCK,
    )


def _add_ophys(
    nwbfile: NWBFile,
    config: SyntheticConfig,
    rois: model.Population,
    true_calcium: np.ndarray,
    first_frame: float,
    rng: np.random.Generator,
) -> None:
    device = nwbfile.create_device(
        name="microscope", description="Simulated two-photon microscope."
    )
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(
            name="green", description="GCaMP emission.", emission_lambda=520.0
        ),
        description=f"Simulated plane at {_IMAGING_DEPTH_UM:.0f} um.",
        device=device,
        excitation_lambda=920.0,
        indicator="GCaMP6f",
        location=config.regions[0],
        imaging_rate=config.frame_rate,
    )
    ophys = nwbfile.create_processing_module("ophys", "Two-photon calcium imaging.")
    image_segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(image_segmentation)
    segmentation = image_segmentation.create_plane_segmentation(
        name="PlaneSegmentation",
        description="Simulated ROIs, one compact blob each.",
        imaging_plane=plane,
    )
    segmentation.add_column("cre_line", "Cre driver line of the ROI's cell type.")
    segmentation.add_column("imaging_depth", "Depth below the pia (um).")
    if config.ground_truth:
        segmentation.add_column("predictable", "Whether the ROI is latent-driven by construction.")
    for j in range(config.n_rois):
        lines = PREDICTABLE_CRE_LINES if rois.predictable[j] else UNPREDICTABLE_CRE_LINES
        extra = {"predictable": bool(rois.predictable[j])} if config.ground_truth else {}
        segmentation.add_roi(
            image_mask=_blob(rng),
            cre_line=lines[rng.integers(len(lines))],
            imaging_depth=_IMAGING_DEPTH_UM,
            **extra,
        )
    observed = true_calcium + rng.normal(0, model.CALCIUM_NOISE, true_calcium.shape)
    dff = DfOverF(name="DfOverF")
    ophys.add(dff)
    dff.create_roi_response_series(
        name="RoiResponseSeries",
        description="dF/F of each ROI: its spikes convolved with a GCaMP kernel, plus noise.",
        data=observed.astype(np.float32),
        rois=segmentation.create_roi_table_region(
            description="All ROIs.", region=list(range(config.n_rois))
        ),
        unit="n.a.",
        starting_time=float(first_frame),
        rate=config.frame_rate,
    )


def _blob(rng: np.random.Generator) -> np.ndarray:
    """A small Gaussian footprint at a random place of the 16x16 plane."""
    y, x = np.mgrid[:_IMAGING_GRID, :_IMAGING_GRID]
    cy, cx = rng.uniform(2, _IMAGING_GRID - 2, 2)
    mask = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 2.0)
    mask[mask < 0.05] = 0.0
    return mask.astype(np.float32)


def _add_behavior(
    nwbfile: NWBFile,
    world: model.World,
    latents: np.ndarray,
    t: np.ndarray,
    rng: np.random.Generator,
) -> None:
    behavior = nwbfile.create_processing_module("behavior", "Continuous behaviour.")
    # Encoder-like sampling: irregular ticks around 60 Hz, as wheel data usually comes.
    ticks = np.cumsum(rng.uniform(0.8, 1.2, int(t[-1] * _WHEEL_RATE)) / _WHEEL_RATE)
    ticks = ticks[ticks <= t[-1]]
    wheel = model.wheel_speed(world, interpolate(t, latents, ticks))
    behavior.add(
        TimeSeries(
            name="wheel_speed",
            description="Wheel angular velocity, a saturating readout of the latents.",
            data=(wheel + rng.normal(0, 0.1, wheel.shape)).astype(np.float32),
            timestamps=ticks,
            unit="rad/s",
        )
    )
    samples = np.arange(int(t[-1] * _RUNNING_RATE) + 1) / _RUNNING_RATE
    running = model.running_speed(world, interpolate(t, latents, samples))
    behavior.add(
        TimeSeries(
            name="running_speed",
            description="Running speed, a rectified readout of the latents.",
            data=(running + rng.normal(0, 0.2, running.shape)).astype(np.float32),
            starting_time=0.0,
            rate=_RUNNING_RATE,
            unit="cm/s",
        )
    )


def _add_truth(
    nwbfile: NWBFile,
    config: SyntheticConfig,
    rates: np.ndarray,
    true_calcium: np.ndarray,
    first_frame: float,
    latents: np.ndarray,
) -> None:
    truth = nwbfile.create_processing_module(
        "ground_truth", "Generative ground truth of this synthetic session (oracle ceilings)."
    )
    fine_rate = 1.0 / model.FINE_DT
    truth.add(
        TimeSeries(
            name="true_rates",
            description=(
                "Firing rate of each unit (Units order), constant within each sample period;"
                " spikes are an exact Poisson draw from it."
            ),
            data=rates.astype(np.float32),
            starting_time=0.0,
            rate=fine_rate,
            unit="Hz",
        )
    )
    truth.add(
        TimeSeries(
            name="true_calcium",
            description="Noise-free dF/F of each ROI on the RoiResponseSeries frame grid.",
            data=true_calcium.astype(np.float32),
            starting_time=float(first_frame),
            rate=config.frame_rate,
            unit="n.a.",
        )
    )
    truth.add(
        TimeSeries(
            name="latents",
            description="Latent state: " + ", ".join(model.LATENT_NAMES) + ".",
            data=latents.astype(np.float32),
            starting_time=0.0,
            rate=fine_rate,
            unit="a.u.",
        )
    )


def _frame_times(config: SyntheticConfig, duration: float) -> np.ndarray:
    """Frame timestamps, half a frame after the recording start (as scopes rarely sync at 0)."""
    first = 0.5 / config.frame_rate
    n = int((duration - model.FINE_DT - first) * config.frame_rate) + 1
    return first + np.arange(n) / config.frame_rate
