"""Small NWB files in the Neural Latents Benchmark's layout (DANDI 000128, 000138-000140).

Each field is the one ``nlb_tools`` (0.0.4, ``nwb_interface.py`` ``NWBDataset.load`` and
``make_tensors.py``) reads from the NLB files, so the files can be opened by nlb_tools
itself; the comment on each field names the line that reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.file import Subject

#: nwb_interface.py NWBDataset.load: "bin_width = 1  # in ms": every NLB file is read on a
#: 1 kHz grid, and its behaviour TimeSeries must sit on that grid or they are dropped.
NLB_RATE_HZ = 1000.0
#: make_tensors.py PARAMS["mc_maze"]: align_range (-250, 450) ms around move_onset_time,
#: plus fp_len 200 ms of forward prediction and a behaviour lag of 100 ms after it.
TRIAL_SECONDS = 1.5
ONSET_OFFSET = 0.5


def write_nlb_file(
    path: Path,
    *,
    n_trials: int = 24,
    n_heldin: int = 6,
    n_heldout: int = 3,
    splits: tuple[str, ...] = ("train", "train", "val"),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write an NLB-layout file with Poisson spikes; returns the true rates (Hz, 1 ms grid)."""
    rng = np.random.default_rng(seed)
    n_units = n_heldin + n_heldout
    duration = n_trials * TRIAL_SECONDS
    n_ms = round(duration * NLB_RATE_HZ)
    t = np.arange(n_ms) / NLB_RATE_HZ
    phase = rng.uniform(0, 2 * np.pi, n_units)
    base = rng.uniform(5.0, 40.0, n_units)
    rates_hz = base[None, :] * (1.0 + 0.8 * np.sin(2 * np.pi * 1.3 * t[:, None] + phase))
    nwbfile = NWBFile(
        session_description="NLB-layout test file",
        identifier=f"nlb-{seed}",
        session_start_time=datetime(2021, 1, 1, tzinfo=UTC),
        subject=Subject(subject_id="Jenkins", species="Macaca mulatta"),
    )
    # nwb_interface.py load(): "units = nwbfile.units.to_dataframe()"; the masks
    # "(~units.heldout)" / "units.heldout" split held-in from held-out units.
    nwbfile.add_unit_column(name="heldout", description="held-out unit for co-smoothing")
    # nwb_interface.py load(): "units.obs_intervals.apply(lambda x: x[-1][-1])" fixes the
    # data's end time; make_mask() turns time outside them into NaN.
    heldout = np.zeros(n_units, dtype=bool)
    heldout[n_heldin:] = True
    for unit in range(n_units):
        counts = rng.poisson(rates_hz[:, unit] / NLB_RATE_HZ)
        spikes = np.repeat(t, counts) + rng.uniform(0, 0.9e-3, counts.sum())
        nwbfile.add_unit(
            spike_times=np.sort(spikes),
            obs_intervals=[[0.0, duration]],
            heldout=bool(heldout[unit]),
        )
    # nwb_interface.py load(): "nwbfile.trials.to_dataframe()" renamed id -> trial_id and
    # stop_time -> end_time; every "*_time" column becomes a timedelta.
    # make_tensors.py PARAMS["mc_maze"]["make_params"]["align_field"] = "move_onset_time".
    nwbfile.add_trial_column(name="move_onset_time", description="movement onset")
    # make_tensors.py _prep_mask(): "dataset.trial_info.split == x" with x in
    # {"train", "val", "test"}; "none" marks trials outside every split.
    nwbfile.add_trial_column(name="split", description="NLB data split")
    # make_tensors.py PARAMS["mc_maze"]["psth_params"]["cond_fields"].
    nwbfile.add_trial_column(name="trial_type", description="maze condition")
    nwbfile.add_trial_column(name="trial_version", description="maze version")
    trial_split = [splits[i % len(splits)] for i in range(n_trials)]
    for i in range(n_trials):
        start = i * TRIAL_SECONDS
        nwbfile.add_trial(
            start_time=start,
            stop_time=start + TRIAL_SECONDS - 0.1,
            # Off the 5 ms grid by 0-4 ms, as real onsets are (ms resolution).
            move_onset_time=start + ONSET_OFFSET + (i % 5) * 1e-3,
            split=trial_split[i],
            trial_type=int(i % 4),
            trial_version=int(i % 2),
        )
    # make_tensors.py PARAMS["mc_maze"]["behavior_field"] = "hand_vel" from "data": a
    # TimeSeries found by find_timeseries() in a processing module, columns named by
    # make_df() from "columns=[...]" in its comments, on the 1 kHz grid.
    behavior = nwbfile.create_processing_module("behavior", "hand kinematics")
    velocity = np.stack([np.cos(t), np.sin(t)], axis=1)
    behavior.add(
        TimeSeries(
            name="hand_vel",
            data=velocity,
            unit="mm/s",
            timestamps=t,
            description="hand velocity",
            comments="columns=[x,y]",
        )
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return {"rates_hz": rates_hz, "heldout": heldout, "split": np.array(trial_split)}
