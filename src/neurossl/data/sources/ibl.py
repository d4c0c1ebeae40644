"""IBL Brain Wide Map (DANDI 000409) NWB -> spiking Session with MtM's trial protocol.

The ``desc-processed`` files of 000409 are written by ``catalystneuro/IBL-to-nwb``; each
lookup below names the converter file that writes the field:

- trials (``datainterfaces/_brainwide_map_trials_interface.py``): the stimulus onset is
  ``gabor_stimulus_onset_time`` (the align time), the first movement
  ``wheel_movement_onset_time``; IBL's ``choice`` (+1/-1/0) is stored as the string
  ``mouse_wheel_choice`` ("clockwise"/"counter_clockwise"/"none"), its ``feedbackType`` as
  the bool ``is_mouse_rewarded`` and ``contrastLeft``/``contrastRight`` as
  ``gabor_stimulus_contrast`` (percent) plus ``gabor_stimulus_side`` ("left"/"right").
  They are mapped back to IBL's numbers, so labels match MtM's and IBL's own code:
  choice +1 = clockwise, feedback +1 = rewarded, signed contrast = right - left as a
  fraction.
- units (``datainterfaces/_ibl_sorting_interface.py``): ``max_electrode`` is the row of
  each unit's peak channel in the electrodes table (its ``electrodes`` list every channel
  within 200 um in channel order, so the first of them is not the unit's channel) and
  ``distance_from_probe_tip_um`` its depth; the generic units reader takes both.
- electrodes (``utils/electrodes.py``): ``location`` holds full Allen CCF names
  ("Field CA3"), or "root", "void", "out-of-atlas", "Unresolved", "Unknown". Names are
  mapped to acronyms with iblatlas' Allen structure tree, then to IBL's Beryl (default),
  Cosmos or the Allen level; the non-regions become "unknown".
- behaviour: ``processing/wheel/WheelVelocitySmoothed`` (``_wheel_kinematics_interface.py``,
  1 kHz) as |velocity| = ``wheel_speed``; ``processing/motion_energy/LeftCameraMotionEnergy``
  (``_roi_motion_energy_interface.py``) as ``whisker_motion_energy``. The converter leaves
  out a camera whose video QC failed; the right camera is then used, as MtM does, logged
  and recorded in ``meta["whisker_motion_energy_source"]``.

MtM's trial filters (Zhang et al. 2024): reaction time (first movement - stimulus onset)
within [0.08, 2] s, finite event times and block probability, a choice was made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pynwb import NWBHDF5IO

from neurossl.data.nwb import nwb_to_sessions
from neurossl.data.nwb_fields import NWBFormatError, sample_times, texts, warn_assumed
from neurossl.data.regions import MAPPINGS, allen_acronyms
from neurossl.data.resample import interpolate
from neurossl.data.session import Session

#: Trial columns of the desc-processed files (after snake_case, which leaves them as is).
ONSET = "gabor_stimulus_onset_time"
FIRST_MOVEMENT = "wheel_movement_onset_time"
FEEDBACK_TIME = "feedback_time"
CHOICE = "mouse_wheel_choice"
CONTRAST = "gabor_stimulus_contrast"
SIDE = "gabor_stimulus_side"
REWARDED = "is_mouse_rewarded"
PROBABILITY_LEFT = "probability_left"
REQUIRED_TRIAL_COLUMNS = (FIRST_MOVEMENT, FEEDBACK_TIME, CHOICE, CONTRAST, SIDE, REWARDED)
#: The converter's inverse of IBL's choice encoding (-1/0/+1 -> strings).
CHOICE_VALUES = {"clockwise": 1.0, "counter_clockwise": -1.0, "none": 0.0}
SIDE_SIGN = {"right": 1.0, "left": -1.0}
#: Event times that must be finite for a trial to be kept (MtM drops NaN events).
EVENT_COLUMNS = ("align", "first_movement_time", "feedback_time")

WHEEL = "wheel_speed"
WHISKER = "whisker_motion_energy"
WHEEL_SERIES = ("wheel", "WheelVelocitySmoothed")
MOTION_ENERGY_MODULE = "motion_energy"
CAMERAS = ("LeftCameraMotionEnergy", "RightCameraMotionEnergy")


@dataclass(frozen=True)
class IBLOptions:
    min_reaction_time: float = 0.08
    max_reaction_time: float = 2.0
    #: Fail when wheel or whisker traces are missing (MtM decodes both).
    require_behavior: bool = True
    region_mapping: str = "Beryl"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "ibl") -> IBLOptions:
        known = {"min_reaction_time", "max_reaction_time", "require_behavior", "region_mapping"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(known)}")
        options = cls(**values)
        if not 0 <= options.min_reaction_time < options.max_reaction_time:
            raise ValueError(
                f"{where}: need 0 <= min_reaction_time < max_reaction_time, got "
                f"{options.min_reaction_time}, {options.max_reaction_time}"
            )
        if options.region_mapping not in MAPPINGS:
            raise ValueError(
                f"{where}.region_mapping must be one of {MAPPINGS}, got {options.region_mapping!r}"
            )
        return options


def read_ibl_session(
    nwb_path: str | Path,
    *,
    dataset: str,
    session: str,
    spike_bin_size: float,
    options: IBLOptions,
    source_sha256: str | None = None,
) -> Session:
    """One 000409 file -> a validated spiking Session with filtered, labelled trials."""
    path = Path(nwb_path)
    result = nwb_to_sessions(
        path,
        dataset=dataset,
        session=session,
        modalities=["spikes"],
        spike_bin_size=spike_bin_size,
        source_sha256=source_sha256,
    )["spikes"]
    trials = canonical_trials(result.trials, path)
    keep = mtm_trial_mask(trials, options)
    if not keep.any():
        raise NWBFormatError(path, "trials", "no trial passes the MtM filters")
    result.trials = trials[keep].reset_index(drop=True)
    result.neurons["region"] = allen_acronyms(
        result.neurons["region"].to_numpy(), options.region_mapping, path, "electrodes/location"
    )
    behavior, camera = read_ibl_behavior(path, options.require_behavior)
    if camera:
        result.meta["whisker_motion_energy_source"] = camera
    centres = result.times + 0.5 * result.bin_size
    names = list(behavior)
    result.behavior = (
        np.stack([interpolate(t, v, centres) for t, v in behavior.values()], axis=1).astype(
            np.float32
        )
        if names
        else np.empty((result.n_bins, 0), dtype=np.float32)
    )
    result.behavior_names = names
    result.validate(where=str(path))
    return result


def canonical_trials(trials: pd.DataFrame, path: Path) -> pd.DataFrame:
    """IBL's numeric trial labels from the converter's columns, plus reaction time."""
    if trials.empty:
        raise NWBFormatError(path, "trials", "missing or empty; IBL sessions need trials")
    if trials.attrs.get("align_column") != ONSET:
        raise NWBFormatError(path, f"trials/{ONSET}", "missing (the stimulus-onset column)")
    missing = [c for c in REQUIRED_TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise NWBFormatError(
            path, f"trials/{missing[0]}", f"missing; a desc-processed file has all of {missing}"
        )
    out = trials[["start", "stop", "align"]].copy()
    out["first_movement_time"] = trials[FIRST_MOVEMENT].to_numpy(dtype=np.float64)
    out["feedback_time"] = trials[FEEDBACK_TIME].to_numpy(dtype=np.float64)
    out["choice"] = _mapped(trials[CHOICE], CHOICE_VALUES, path, CHOICE)
    side = _mapped(trials[SIDE], {**SIDE_SIGN, "none": np.nan}, path, SIDE)
    contrast = trials[CONTRAST].to_numpy(dtype=np.float64) / 100.0
    out["contrast"] = contrast
    out["signed_contrast"] = side * contrast
    rewarded = trials[REWARDED].to_numpy()
    if rewarded.dtype.kind != "b":
        rewarded = _mapped(pd.Series(rewarded), {"true": 1.0, "false": 0.0}, path, REWARDED) > 0
    out["feedback_type"] = np.where(rewarded, 1.0, -1.0)
    if PROBABILITY_LEFT in trials.columns:
        out["probability_left"] = trials[PROBABILITY_LEFT].to_numpy(dtype=np.float64)
    else:
        warn_assumed(path, f"trials/{PROBABILITY_LEFT}", "missing; block label left NaN")
        out["probability_left"] = np.nan
    out["block"] = out["probability_left"]
    out["reaction_time"] = out["first_movement_time"] - out["align"]
    return out


def _mapped(column: pd.Series, values: Mapping[str, float], path: Path, name: str) -> np.ndarray:
    words = np.char.lower(texts(column.to_numpy()).astype(str))
    unknown = sorted(set(words) - set(values))
    if unknown:
        raise NWBFormatError(
            path, f"trials/{name}", f"values {unknown}; expected one of {sorted(values)}"
        )
    return np.array([values[w] for w in words], dtype=np.float64)


def mtm_trial_mask(trials: pd.DataFrame, options: IBLOptions) -> np.ndarray:
    """MtM's filters: RT in [min, max] s, finite event times, a choice was made."""
    events = trials[list(EVENT_COLUMNS)].to_numpy(dtype=np.float64)
    rt = trials["reaction_time"].to_numpy(dtype=np.float64)
    choice = trials["choice"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(events).all(axis=1)
            & np.isfinite(trials["probability_left"].to_numpy(dtype=np.float64))
            & (rt >= options.min_reaction_time)
            & (rt <= options.max_reaction_time)
            & np.isfinite(choice)
            & (choice != 0)
        )


def read_ibl_behavior(
    path: Path, required: bool
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """(times, values) of wheel speed and whisker motion energy, and the camera used."""
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    camera = ""
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        module, name = WHEEL_SERIES
        series = _series(nwbfile, module, name)
        if series is not None:
            field = f"processing/{module}/{name}"
            values = np.abs(np.asarray(series.data[:], dtype=np.float64).reshape(-1))
            found[WHEEL] = (sample_times(series, path, field), values)
        for name in CAMERAS:
            series = _series(nwbfile, MOTION_ENERGY_MODULE, name)
            if series is None:
                continue
            field = f"processing/{MOTION_ENERGY_MODULE}/{name}"
            if name != CAMERAS[0]:
                warn_assumed(
                    path, f"processing/{MOTION_ENERGY_MODULE}/{CAMERAS[0]}", f"missing; used {name}"
                )
            values = np.asarray(series.data[:], dtype=np.float64).reshape(-1)
            found[WHISKER] = (sample_times(series, path, field), values)
            camera = field
            break
    missing = [k for k in (WHEEL, WHISKER) if k not in found]
    if missing and required:
        raise NWBFormatError(
            path,
            f"processing/{WHEEL_SERIES[0]}|{MOTION_ENERGY_MODULE}",
            f"no series for {missing} (looked for {'/'.join(WHEEL_SERIES)} and "
            f"{MOTION_ENERGY_MODULE}/{' or '.join(CAMERAS)}); set ibl.require_behavior: "
            "false to go without",
        )
    return {k: found[k] for k in (WHEEL, WHISKER) if k in found}, camera


def _series(nwbfile: Any, module: str, name: str) -> Any:
    if module not in nwbfile.processing:
        return None
    return nwbfile.processing[module].data_interfaces.get(name)
